"""mosaic/analysis/dealing.py: a plan's requests dealt again by their true lengths."""
from collections import Counter

import numpy as np

from mosaic.analysis import scheduler_bench as sb
from mosaic.analysis.dealing import deal_by_cost, redeal, step_terms
from mosaic.analysis.information_gap import replica_counts
from mosaic.run.pipeline import plan_stage


def test_the_replica_holding_the_longest_takes_the_short_ones():
    out = np.array([100.0, 60.0, 50.0, 50.0, 40.0, 1.0])
    got = deal_by_cost(out, np.zeros(6), {0: 3, 1: 3}, (1.0, 0.1, 0.0))
    # Balancing tokens gives {100, 50, 1} / {60, 50, 40}: 100 F + 15.1 against 60 F + 15.0 with c = 0.1.
    assert sorted(got[0]) == [0, 4, 5] and sorted(got[1]) == [1, 2, 3]
    cost = {w: 1.0 * out[ix].max() + 0.1 * (out[ix] - 1).sum() for w, ix in got.items()}
    assert max(cost.values()) < 100.0 + 0.1 * (99 + 49 + 0)


def test_counts_are_kept_and_every_request_dealt_once():
    rng = np.random.default_rng(3)
    out = rng.integers(1, 30000, size=200).astype(float)
    counts = {4: 70, 9: 65, 2: 65}
    got = deal_by_cost(out, rng.integers(16, 2000, size=200).astype(float), counts, (10.0, 0.05, 1e-5))
    assert {w: len(ix) for w, ix in got.items()} == counts
    assert sorted(i for ix in got.values() for i in ix) == list(range(200))


def test_redeal_keeps_the_plan_but_which_request_goes_where():
    inst = sb.instances(("presets",), 0, quick=True)[2]   # synth_gpqa: two models on several workers
    reqs = list(inst.requests)
    _, plan = plan_stage("expert", reqs, inst.workload.expert_models, sb.scheduler_config("engine_aware", inst.k),
                         "scheduled", inst.cluster, inst.profiles, inst.workload)
    truth = {r.id: float(inst.workload.outcomes[r.id].output_tokens) for r in reqs}
    again = redeal(plan, reqs, truth, inst.profiles)
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
    f, c, a = step_terms(inst.profiles, moved[0])
    assert f > 0 and c >= 0 and a >= 0
