"""The clairvoyant reference plan (benchmarks/scheduler/clairvoyant.py): a valid plan within K and
memory, the same on every call, and, where lengths matter, faster than a length-blind split."""
from benchmarks.scheduler import bench as sb
from mosaic.engine import GroupCosts
from benchmarks.scheduler.clairvoyant import clairvoyant_plan, contiguous, improve, pack
from mosaic.cluster import Cluster
from mosaic.costs.predict import fitting_workers
from mosaic.plan import Plan, Session, WorkerPlan, validate_plan
from mosaic.profiles import load_profiles
from mosaic.engine import run_session

PAPER = load_profiles("paper_a100")


def test_plans_are_valid_within_k_and_memory_and_deterministic():
    for inst in sb.generated_instances(0, quick=True):
        plan = clairvoyant_plan(sb.model_batches(inst), inst.profiles, inst.cluster, inst.k)
        fits = {m: set(fitting_workers(inst.profiles.model(m), inst.profiles.engine, inst.cluster))
                for m in inst.workload.expert_models}
        validate_plan(plan, inst.requests, fits, inst.k)
        assert plan == clairvoyant_plan(sb.model_batches(inst), inst.profiles, inst.cluster, inst.k)


MODEL = "QwenR1"
# Four long outputs among a thousand short ones: two replicas' worth of work either way.
OUTS = [16000, 15900, 15800, 15700] + [1000] * 1000
BATCH = [(f"r{i}", 200, o) for i, o in enumerate(OUTS)]


def test_contiguous_groups_keep_the_long_requests_together():
    """The long four share one small group, so the other replica's session ends with a short output."""
    mc = GroupCosts.of(PAPER, MODEL, BATCH, 80.0)
    groups = contiguous(mc, 2)
    assert [[mc.ids[i] for i in g] for g in groups][0] == ["r0", "r1", "r2", "r3"]
    assert max(mc.outputs[i] for i in groups[1]) == 1000


def test_it_beats_a_length_blind_split_where_lengths_matter():
    """A blind even split deals two long outputs to each worker, so both sessions run as long as
    the longest and carry half the bulk besides; the clairvoyant plan, which sees them, keeps them
    together and simulates faster."""
    ids = [b[0] for b in BATCH]
    plan = clairvoyant_plan({MODEL: BATCH}, PAPER, Cluster.uniform(2, 80.0), None)
    blind = Plan("expert", "blind", (WorkerPlan(0, (Session(MODEL, tuple(ids[0::2])),)),
                                     WorkerPlan(1, (Session(MODEL, tuple(ids[1::2])),))))
    eng, prof = PAPER.engine, PAPER.model(MODEL)

    def makespan(p):
        return max(sum(run_session(prof, eng, 80.0, [b for b in BATCH if b[0] in set(s.request_ids)])
                       for s in wp.sessions) for wp in p.workers if wp.sessions)
    assert makespan(plan) < 0.9 * makespan(blind)


def test_moves_and_swaps_mend_a_longest_first_packing():
    """Five one-group models (3, 3, 2, 2, 2 s) on two workers: longest first packs 3 + 2 + 2 and
    3 + 2 (7 s); a swap reaches 3 + 3 and 2 + 2 + 2 (6 s). With unloads of 0.5 s between sessions
    the best it reaches is 2 + 2 + 2 (+ 1 s) beside 3 + 3 (+ 0.5 s); a model that fits one worker
    only is never moved, and no step makes the packing worse."""
    sizes = {"a": 3.0, "b": 3.0, "c": 2.0, "d": 2.0, "e": 2.0}
    groups = {m: [([m + "-r"], c)] for m, c in sizes.items()}
    cost = {m: {(m + "-r",): c} for m, c in sizes.items()}
    zero = {m: 0.0 for m in sizes}
    both = {m: frozenset({0, 1}) for m in sizes}
    greedy = pack(groups, zero, zero, both, 2, None, 0.0)
    assert greedy[0] == 7.0
    best, held = improve(greedy[1], cost, zero, zero, both, None, 0.0)
    assert best == 6.0
    assert sorted(sorted(m for m, _ in h) for h in held) == [["a", "b"], ["c", "d", "e"]]
    # K = 3 keeps any three together; the unload between two sessions counts as pack counts it.
    best, held = improve(greedy[1], cost, zero, {m: 0.5 for m in sizes}, both, 3, 0.0)
    assert all(len(h) <= 3 for h in held) and best == 7.0   # 3 + 3 + 0.5 = 6.5 vs 2 + 2 + 2 + 1.0 = 7
    # "a" fits worker 0 only: it stays, and so does the packing where only a double swap helps.
    pinned = dict(both, a=frozenset({0}))
    greedy = pack(groups, zero, zero, pinned, 2, None, 0.0)
    best, held = improve(greedy[1], cost, zero, zero, pinned, None, 0.0)
    assert any(m == "a" for m, _ in held[0]) and best <= greedy[0]
