"""benchmarks/scheduler/dealing.py: a plan's requests dealt again by their true lengths, with the
clairvoyant reference's `spread` filling replicas of fixed sizes."""
from collections import Counter

import numpy as np

from benchmarks.scheduler import bench as sb
from benchmarks.scheduler.clairvoyant import spread
from mosaic.engine import GroupCosts
from benchmarks.scheduler.dealing import redeal
from benchmarks.scheduler.information_gap import replica_counts
from mosaic.profiles import load_profiles
from mosaic.run.pipeline import plan_stage


def _costs(outputs, prompts=None):
    profiles = load_profiles(sb.BASE_PROFILES)
    prompts = [200] * len(outputs) if prompts is None else prompts
    return GroupCosts.of(profiles, "LlamaR1", [(f"r{i}", int(p), int(o)) for i, (p, o) in
                                                enumerate(zip(prompts, outputs))], 80.0)


def test_the_replica_holding_the_longest_takes_the_short_ones():
    mc = _costs([30000, 20000, 5000, 5000, 4000, 10])
    got = spread(mc, 2, [3, 3])
    assert sorted(got[0]) == [0, 4, 5] and sorted(got[1]) == [1, 2, 3]
    # Balancing tokens, {30000, 5000, 10} / {20000, 5000, 4000}, leaves the busier replica busier.
    assert max(mc.cost_of(sorted(g)) for g in got) < max(mc.cost_of(g) for g in ([0, 3, 5], [1, 2, 4]))
    assert spread(mc, 2) == [[0], [1, 2, 3, 4, 5]]   # without sizes, as the clairvoyant plan splits


def test_sizes_are_kept_and_every_request_dealt_once():
    rng = np.random.default_rng(3)
    mc = _costs(rng.integers(1, 30000, size=200), rng.integers(16, 2000, size=200))
    sizes = [70, 65, 65]
    got = spread(mc, 3, sizes)
    assert [len(g) for g in got] == sizes
    assert sorted(i for g in got for i in g) == list(range(200))


def test_redeal_keeps_the_plan_but_which_request_goes_where():
    inst = sb.instances(("presets",), 0, quick=True)[2]   # synth_gpqa: two models on several workers
    reqs = list(inst.requests)
    _, plan = plan_stage("expert", reqs, inst.workload.expert_models, sb.scheduler_config("engine_aware", inst.k),
                         "scheduled", inst.cluster, inst.profiles, inst.workload)
    truth = {r.id: float(inst.workload.outcomes[r.id].output_tokens) for r in reqs}
    again = redeal(plan, reqs, truth, inst.profiles, inst.memory_gib)
    assert replica_counts(again) == replica_counts(plan)
    assert Counter(r for wp in again.workers for s in wp.sessions for r in s.request_ids) == Counter(r.id for r in reqs)
    assert [[s.model for s in wp.sessions] for wp in again.workers] == [[s.model for s in wp.sessions] for wp in plan.workers]
    order = {r.id: i for i, r in enumerate(reqs)}
    for wp in again.workers:
        for s in wp.sessions:
            assert list(s.request_ids) == sorted(s.request_ids, key=order.__getitem__)   # stream order kept
    moved = [m for m in {s.model for wp in plan.workers for s in wp.sessions}
             if sum(s.model == m for wp in plan.workers for s in wp.sessions) > 1]
    assert moved, "the case needs a model on several workers"
    assert again != plan   # with the true lengths, some request of those models lands elsewhere
