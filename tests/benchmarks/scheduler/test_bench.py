"""The scheduler benchmark (benchmarks/scheduler/bench.py): its instance generator, its lower
bound (never beaten by a simulated plan of any registered policy, tight where it can be computed by
hand), plan hashes and the rendered table. Tiny instances only: the fast suite."""
import itertools
import math
from dataclasses import replace

import numpy as np
import pytest

from benchmarks.scheduler import packing_bound
from benchmarks.scheduler import bench as sb
from mosaic.cluster import Cluster
from mosaic.plan import Plan, Session, WorkerPlan
from mosaic.profiles import ProfileSet, load_profiles
from mosaic.workload.types import Outcome, Query, Workload
from mosaic.engine import run_session
from mosaic.backends.sim.backend import SimBackend


@pytest.fixture(scope="module")
def quick():
    return sb.generated_instances(0, quick=True)


@pytest.fixture(scope="module")
def quick_df(quick):
    return sb.bench(quick)


# ----------------------------------------------------------------------------- generator

def test_the_generator_is_deterministic_and_seeded():
    args = ("t", 4, 6, 2, 40.0, "zipf", "reasoning", 90)
    a, b = sb.make_instance(*args, seed=3), sb.make_instance(*args, seed=3)
    assert a.requests == b.requests
    assert a.workload.outcomes == b.workload.outcomes and a.workload.calibration == b.workload.calibration
    assert {m: p.output for m, p in a.profiles.models.items()} == {m: p.output for m, p in b.profiles.models.items()}
    c = sb.make_instance(*args, seed=4)
    assert c.workload.outcomes != a.workload.outcomes
    assert sb.generated_shapes(0) == sb.generated_shapes(0)


def test_the_grid_sample_covers_every_n_and_the_requested_shapes():
    shapes = sb.generated_shapes(0)
    assert len(shapes) == sb.N_GENERATED
    assert all(sum(s[0] == n for s in shapes) >= 5 for n in sb.GRID_N)
    assert {s[1] for s in shapes} == set(sb.GRID_M)           # M != 6 included
    assert {s[2] for s in shapes} == set(sb.GRID_K)
    assert {s[3] for s in shapes} == set(sb.SKEWS) and {s[4] for s in shapes} == set(sb.MIXES)
    assert {s[5] for s in shapes} == set(sb.MEMORIES)
    assert all(k is None or k * n >= m for n, m, k, *_ in shapes)   # K*N >= M: every instance is feasible
    assert any(m > n for n, m, *_ in shapes) and any(k == 1 for _, _, k, *_ in shapes)


def test_quick_instances_have_the_shapes_they_claim(quick):
    base = load_profiles(sb.BASE_PROFILES)
    assert any(i.n_models != 6 for i in quick)
    assert any(i.k == 1 for i in quick) and any(i.n_models > i.n_workers for i in quick)
    for inst, (n, m, k, skew, mix, mem) in zip(quick, sb.QUICK_SHAPES):
        got = (inst.n_workers, inst.n_models, inst.k, inst.skew, inst.mix, inst.memory_gib)
        assert got == (n, m, k, skew, mix, mem)
        assert abs(len(inst.requests) - sb.QUICK_REQUESTS) < sb.SLOTS
        reasoning = sum(p.kind == "reasoning" for p in inst.profiles.models.values())
        assert reasoning == min(m - 1, max(1, round(m * sb.MIXES[mix])))
        for p in inst.profiles.models.values():
            src = base.model(p.name.rsplit("-", 1)[0])
            assert p.session_fit is None and p.outputs == {}
            assert 0.5 - 1e-6 <= p.output.mean() / src.output.mean() <= 2.0 + 1e-6
        assert set(inst.workload.calibration) == set(inst.profiles.models)
        assert all(inst.workload.calibration[m].n == sb.CALIBRATION_N for m in inst.profiles.models)


# ----------------------------------------------------------------------------- lower bound

@pytest.mark.slow
def test_no_simulated_plan_of_any_policy_goes_below_the_bound(quick_df):
    assert set(quick_df["policy"]) == set(sb.default_policies())
    assert (quick_df["status"] == "ok").all(), quick_df[quick_df["status"] != "ok"][["policy", "error"]]
    sim, lb = quick_df["sim_s"].astype(float), quick_df["lb_s"].astype(float)
    assert (sim >= lb * (1 - 1e-9)).all(), quick_df[sim < lb][["instance", "policy", "sim_s", "lb_s"]]
    # The K-free bound is weaker, and it holds for every plan, whether the plan honours K or not.
    assert (quick_df["lb_no_k_s"] <= quick_df["lb_k_s"] + 1e-9).all()
    assert (sim >= quick_df["lb_no_k_s"] * (1 - 1e-9)).all()
    # Plans that honour K are measured against the K-aware bound.
    kept = quick_df["respects_k"].astype(bool)
    assert (quick_df.loc[kept, "lb_s"] == quick_df.loc[kept, "lb_k_s"]).all()
    # The clairvoyant reference is a plan within K like any other: never below the K-aware bound.
    clair = quick_df.drop_duplicates("instance")
    assert clair["clair_s"].notna().all()
    assert (clair["clair_s"].astype(float) >= clair["lb_k_s"] * (1 - 1e-9)).all()


def test_sessions_are_subadditive_on_random_splits(quick):
    """P1, the bound's assumption: splitting a model's requests over several sessions (in any
    order) never takes less engine time in total than the single session S_m."""
    rng = np.random.default_rng(0)
    for inst in quick:
        bounds = sb.model_bounds(inst)
        eng = inst.profiles.engine
        for m, b in bounds.items():
            batch = sb.session_batch(inst, [r for r in inst.requests if r.model == m])
            if len(batch) < 4:
                continue
            for parts in (2, 3):
                cut = rng.permutation(len(batch)) % parts
                total = sum(run_session(inst.profiles.model(m), eng, inst.memory_gib,
                                        [batch[i] for i in rng.permutation(np.flatnonzero(cut == p))])
                            for p in range(parts))
                assert total >= b.session_s * (1 - 1e-9), (inst.name, m, parts)
            alone = [run_session(inst.profiles.model(m), eng, inst.memory_gib, [x]) for x in batch]
            assert b.longest_s == pytest.approx(max(alone)) and b.shortest_s <= min(alone) + 1e-9


def _brute_force_replica(lb: sb.LowerBound, n: int, k, s0: float) -> float:
    """Term (c) by enumerating every replication vector r."""
    mb = list(lb.models.values())
    u = min(b.unload_s for b in mb)
    best = math.inf
    for rs in itertools.product(*[range(1, b.max_workers + 1) for b in mb]):
        if k is not None and sum(rs) > k * n:
            continue
        c = s0 + max(max(b.load_s + b.session_s / r for r, b in zip(rs, mb)),
                     max(b.load_s + b.longest_s for b in mb),
                     (sum(r * b.load_s + b.session_s for r, b in zip(rs, mb)) + u * max(0, sum(rs) - n)) / n)
        best = min(best, c)
    return best


def test_the_replica_term_is_the_least_makespan_over_replication_vectors(quick):
    for inst in quick:
        if inst.n_models > 6:
            continue
        for k in {inst.k, None}:
            i = replace(inst, k=k)
            lb = sb.lower_bound(i)
            assert lb.replica_s == pytest.approx(_brute_force_replica(lb, i.n_workers, k, 0.0), rel=1e-9)
            assert lb.replica_s >= max(lb.work_s, lb.single_s) * (1 - 1e-9)
            # The step floor only adds to the replica term, and the bound is the largest term.
            assert lb.steps_s >= lb.replica_s * (1 - 1e-9)
            assert lb.packing_s >= lb.steps_s * (1 - 1e-9)
            assert lb.lb_s == max(lb.work_s, lb.single_s, lb.replica_s, lb.pigeonhole_s, lb.steps_s, lb.packing_s)


COUNTS = {"LlamaR1": 400, "Qwen": 8}      # requests per model: the reasoning model is throughput-bound
OUTPUT = {"LlamaR1": 3000, "Qwen": 500}


def _hand_instance(k):
    """Two models on two 80 GiB workers, identical requests per model (so order cannot matter)."""
    base = load_profiles("paper_a100")
    models = {m: replace(base.model(m), session_fit=None) for m in ("LlamaR1", "Qwen")}
    profiles = ProfileSet(base.engine, models, base.datasets)
    queries = tuple(Query(f"{m}-q{i}", "x", 200, "A", (m,)) for m in models for i in range(COUNTS[m]))
    wl = Workload("hand", 0, queries, tuple(models), "LlamaR1")
    reqs = wl.expert_requests()
    wl = replace(wl, outcomes={r.id: Outcome(OUTPUT[r.model], None) for r in reqs})
    return sb.Instance("test", "hand", k, "uniform", "paper", Cluster.uniform(2, 80.0), profiles, wl, reqs)


def test_the_k_term_is_tight_on_a_hand_made_case():
    """K = 1, M = N = 2: each model must run whole on its own worker, so the makespan is
    max_m (l_m + S_m) exactly, which the even spread of all work (term a) underestimates."""
    inst = _hand_instance(1)
    eng = inst.profiles.engine
    by_hand = {}
    for m, p in inst.profiles.models.items():
        s = run_session(p, eng, 80.0, [(f"r{i}", 200, OUTPUT[m]) for i in range(COUNTS[m])])
        by_hand[m] = p.load_time_s + s
    expected = max(by_hand.values())
    lb = sb.lower_bound(inst)
    assert lb.lb_s == pytest.approx(expected, rel=1e-9) and lb.binding == "replica"
    assert lb.work_s == pytest.approx(sum(by_hand.values()) / 2) and lb.work_s < expected
    plan = Plan("expert", "hand", tuple(
        WorkerPlan(w, (Session(m, tuple(r.id for r in inst.requests if r.model == m)),))
        for w, m in enumerate(inst.profiles.models)))
    sim = SimBackend(inst.cluster, inst.profiles).run(plan, {r.id: r for r in inst.requests},
                                                      inst.workload.outcomes).makespan_s
    assert sim == pytest.approx(expected, rel=1e-12) and sim >= lb.lb_s
    # Without K the long model may be split over both workers: the bound drops, as it must.
    assert sb.lower_bound(_hand_instance(None)).lb_s < expected * 0.99


def _packing_instance():
    """Two workers, K = 2, four clones of one model (M = K N: one replica each, two per worker):
    three of 200 identical 2000-token requests and one of 2."""
    base = load_profiles("paper_a100")
    counts = {"A": 200, "B": 200, "C": 200, "D": 2}
    models = {m: replace(base.model("Qwen"), name=m, session_fit=None) for m in counts}
    profiles = ProfileSet(base.engine, models, base.datasets)
    queries = tuple(Query(f"{m}-q{i}", "x", 200, "A", (m,)) for m in counts for i in range(counts[m]))
    wl = Workload("hand", 0, queries, tuple(models), "A")
    reqs = wl.expert_requests()
    wl = replace(wl, outcomes={r.id: Outcome(2000, None) for r in reqs})
    return sb.Instance("test", "hand", 2, "uniform", "paper", Cluster.uniform(2, 80.0), profiles, wl, reqs)


def test_the_packing_term_sees_that_whole_sessions_must_fit_on_the_workers():
    """Three equal models and a small one on two workers of two models each: the best plan pairs
    two of the equal ones, which the workers' total time (half of all the work) misses; the packing
    term finds it to within its search tolerance, and no plan beats it."""
    inst = _packing_instance()
    lb = sb.lower_bound(inst)
    assert lb.binding == "packing"
    sims = []
    for pair in (("A", "D"), ("B", "D"), ("C", "D")):
        rest = tuple(m for m in "ABC" if m not in pair)
        plan = Plan("expert", "hand", tuple(
            WorkerPlan(w, tuple(Session(m, tuple(r.id for r in inst.requests if r.model == m)) for m in ms))
            for w, ms in enumerate((pair, rest))))
        sims.append(SimBackend(inst.cluster, inst.profiles).run(plan, {r.id: r for r in inst.requests},
                                                               inst.workload.outcomes).makespan_s)
    best = min(sims)
    assert lb.lb_s <= best
    assert lb.lb_s >= best * (1 - 2 * packing_bound.TOLERANCE)
    assert max(lb.work_s, lb.replica_s, lb.steps_s) < best * 0.95   # 0.90 of it: half the work each
    # Without the packing term (no nodes) the bound falls back to the others.
    assert sb.lower_bound(inst, packing_nodes=0).lb_s == pytest.approx(lb.steps_s)


def test_packs_proves_infeasible_only_what_is():
    """Three pieces of 6 s on two workers of 10 s: no packing; of 12 s: one pairs two."""
    need = packing_bound.Need(1, 5.0, 1.0, 6.0, 6.0, frozenset({0, 1}))
    assert packing_bound.packs([need] * 3, 2, 2, 10.0, 0.0) is False
    assert packing_bound.packs([need] * 3, 2, 2, 12.0, 0.0) is True
    # K = 1 forbids the pairing; a model that fits one worker only must go there.
    assert packing_bound.packs([need] * 3, 2, 1, 12.0, 0.0) is False
    one = replace(need, fits=frozenset({1}))
    assert packing_bound.packs([one, one], 2, 2, 12.0, 0.0) is True
    assert packing_bound.packs([one, one], 2, 2, 12.0, 0.5) is False   # the unload between them


def test_slot_count_proves_a_big_model_runs_alone():
    """Two workers of two slots, four models: the big one (10 s, its longest request alone, so
    splitting does not shrink it) cannot share a worker of 11 s with a 2 s session, and running
    alone it leaves three slots for three models on one worker of two."""
    big = packing_bound.Need(1, 9.0, 1.0, 2.0, 10.0, frozenset({0, 1}))
    small = packing_bound.Need(1, 1.0, 1.0, 2.0, 2.0, frozenset({0, 1}))
    needs = [big, small, small, small]
    assert packing_bound.slots_short(needs, 2, 2, 11.0, 0.0)
    assert not packing_bound.packs(needs, 2, 2, 11.0, 0.0)
    # Room for the big model and one small session; or three slots each: no slot shortage.
    assert not packing_bound.slots_short(needs, 2, 2, 12.0, 0.0)
    assert packing_bound.packs(needs, 2, 2, 12.0, 0.0)
    assert not packing_bound.slots_short(needs, 2, 3, 11.0, 0.0)
    assert packing_bound.packs(needs, 2, 3, 11.0, 0.0) == packing_bound.packs(needs, 2, 3, 11.0, 0.0,
                                                                               shortcuts=False)


def _draw_times(rng: np.random.Generator) -> tuple[float, float, float]:
    """A random model's load, smallest session and longest request alone (each at least the last)."""
    load = float(rng.uniform(0.5, 2.0))
    small = load + float(rng.uniform(0.1, 1.0))
    return load, small, small + float(rng.uniform(0.0, 4.0))

def test_the_partition_check_pairs_largest_with_smallest():
    """Four whole sessions (6, 5, 4, 1 s) on two workers of two: the best pairing is 6 + 1 and
    5 + 4, so 9 s fits and 8.5 s does not, though the total (16 s) fits 2 x 8.5; and with an unload
    between the two models the 9 s fails too. K = 3 (one worker holding three) is left alone."""
    def whole(t: float) -> packing_bound.Need:
        return packing_bound.Need(1, t - 0.5, 0.5, 0.6, 0.6, frozenset({0, 1}))
    needs = [whole(6.0), whole(5.0), whole(4.0), whole(1.0)]
    assert not packing_bound.groups_short(needs, 2, 2, 9.0, 0.0)
    assert packing_bound.packs(needs, 2, 2, 9.0, 0.0)
    assert packing_bound.groups_short(needs, 2, 2, 8.5, 0.0)
    assert packing_bound.groups_short(needs, 2, 2, 9.0, 0.1)
    assert not packing_bound.packs(needs, 2, 2, 8.5, 0.0, shortcuts=False)
    assert not packing_bound.groups_short(needs, 2, 3, 8.5, 0.0)   # M != K N: not its case
    # K = 3 on two workers: among the 3 largest some worker holds two, with the smallest other:
    # 5 + 4 + 1 = 10 > 9.5, where the total (6 + 5 + 4 + 3 + 2 + 1 = 21) fits 2 x 10.5; at 11 s
    # {6, 4, 1} and {5, 3, 2} pack.
    six = [whole(t) for t in (6.0, 5.0, 4.0, 3.0, 2.0, 1.0)]
    assert packing_bound.groups_short(six, 2, 3, 9.5, 0.0)
    assert not packing_bound.packs(six, 2, 3, 9.5, 0.0, shortcuts=False)
    assert not packing_bound.groups_short(six, 2, 3, 11.0, 0.0)
    assert packing_bound.packs(six, 2, 3, 11.0, 0.0)


@pytest.mark.slow
def test_the_partition_check_proves_only_what_is():
    """On random M = K N cases, every case the partition check calls infeasible HiGHS's search
    (run to the end) finds infeasible too, and the check decides some of them."""
    rng = np.random.default_rng(3)
    decided = 0
    for _ in range(120):
        n, k = int(rng.integers(2, 5)), int(rng.integers(2, 4))
        needs = []
        for _ in range(n * k):
            load, small, longest = _draw_times(rng)
            needs.append(packing_bound.Need(1, float(rng.uniform(0.5, 8.0)) ** 1.5, load, small, longest,
                                            frozenset(range(n))))
        room = sum(nd.load_s + nd.work_s for nd in needs) / n * float(rng.uniform(1.0, 1.6))
        u_min = float(rng.choice([0.0, 0.3]))
        if packing_bound.groups_short(needs, n, k, room, u_min):
            decided += 1
            assert not packing_bound.packs(needs, n, k, room, u_min, node_limit=100_000, shortcuts=False)
    assert decided >= 10


def test_shortcuts_change_no_answer_of_packs():
    """The slot count, the partition check and the greedy's placement only answer sooner: on
    random small cases (some packing, some not, near the edge) `packs` answers as HiGHS's search
    alone does, and every greedy placement keeps K, the fit sets and each model's replica count."""
    rng = np.random.default_rng(7)
    answers, short = set(), 0
    for _ in range(60):
        n, m, k = int(rng.integers(2, 5)), int(rng.integers(2, 7)), int(rng.integers(1, 4))
        needs = []
        for _ in range(m):
            load, small, longest = _draw_times(rng)
            fits = frozenset(int(w) for w in range(n) if rng.random() < 0.8) or frozenset({0})
            reps = int(rng.integers(1, min(2, len(fits)) + 1))
            needs.append(packing_bound.Need(reps, float(rng.uniform(1.0, 8.0)), load, small, longest, fits))
        if k * n < m:
            continue
        demand = sum(nd.replicas * nd.load_s + nd.work_s for nd in needs)
        room = demand / n * float(rng.uniform(0.9, 1.6))
        u_min = float(rng.choice([0.0, 0.3]))
        placed = packing_bound.greedy_placement(needs, n, k, room, u_min)
        if placed is not None:
            assert all(len(on) >= nd.replicas and set(on) <= nd.fits for on, nd in zip(placed, needs))
            assert all(sum(w in on for on in placed) <= k for w in range(n))
        got = packing_bound.packs(needs, n, k, room, u_min)
        assert got == packing_bound.packs(needs, n, k, room, u_min, node_limit=100_000, shortcuts=False)
        answers.add(got)
        short += packing_bound.slots_short(needs, n, k, room, u_min)
    assert answers == {True, False} and short > 0


def test_an_infeasible_k_is_reported_not_raised():
    inst = sb.make_instance("k1", 2, 3, 1, 80.0, "uniform", "paper", 30, seed=0)   # K*N = 2 < M = 3
    assert sb.lower_bound(inst).lb_s == math.inf
    rows = {r["policy"]: r for r in sb.bench_instance(inst, ["ilp", "least_loaded", "round_robin"])}
    assert rows["ilp"]["status"] == "n/a" and "K" in rows["ilp"]["error"]
    assert rows["least_loaded"]["status"] == "n/a"
    rr = rows["round_robin"]   # no K setting: it plans anyway, held to the bound without K
    assert rr["status"] == "ok" and rr["respects_k"] is False and rr["sim_s"] >= rr["lb_s"]


# ----------------------------------------------------------------------------- hashes and tables

@pytest.mark.slow
def test_plan_hashes_are_identical_on_two_runs(quick, quick_df):
    assert quick_df["hash_stable"].astype(bool).all()
    again = sb.bench(quick[:2])
    first = quick_df[quick_df["instance"].isin({i.name for i in quick[:2]})]
    assert sorted(again["plan_hash"]) == sorted(first["plan_hash"])
    assert sb.to_csv_frame(again).equals(sb.to_csv_frame(first))


@pytest.mark.slow
def test_render_has_a_row_per_policy_and_n_and_the_csv_no_solve_times(quick_df):
    md = sb.render(quick_df)
    for pol in sb.default_policies():
        assert f"| 2 | {pol} |" in md and f"| 4 | {pol} |" in md and f"| all | {pol} |" in md
    assert "python -m benchmarks.scheduler" in md and "2 CPU cores" in md
    assert "Plans simulated below the lower bound: 0" in md
    assert "- generated: clairvoyant " in md and "best known " in md
    csv = sb.to_csv_frame(quick_df)
    assert "solve_s" not in csv.columns and "solve2_s" not in csv.columns
    assert list(csv[["family", "n_workers", "instance", "policy"]].itertuples(index=False)) == sorted(
        csv[["family", "n_workers", "instance", "policy"]].itertuples(index=False))


@pytest.mark.slow
def test_the_prediction_band_holds_the_prediction_and_only_random_predictions_have_one(quick_df):
    ok = quick_df[quick_df["status"] == "ok"]
    banded = ok[ok["pred_low_s"].notna()]
    # engine_aware's prediction is the mean of its scenarios' makespans: inside their 10-90% band
    assert set(banded["policy"]) == {"engine_aware"} and len(banded) == (ok["policy"] == "engine_aware").sum()
    assert ((banded["pred_low_s"] <= banded["predicted_s"]) & (banded["predicted_s"] <= banded["pred_high_s"])).all()
    assert (banded["pred_low_s"] < banded["pred_high_s"]).any()
    assert ok[ok["policy"] != "engine_aware"]["pred_high_s"].isna().all()
    share = sb._in_band(banded)
    sim = banded["sim_s"]
    assert share == ((banded["pred_low_s"] <= sim) & (sim <= banded["pred_high_s"])).mean()
    assert "| sim in pred. band |" in sb.render(quick_df)


def test_the_chance_within_the_target_and_the_sim_quantile_on_hand_made_draws():
    draws = np.array([90.0, 100.0, 100.0, 112.0, 200.0])
    # 100 is within 10% of a makespan m where 100/1.1 <= m <= 100/0.9: 100, 100 (not 90: 100/90 - 1 = 11%)
    assert sb.chance_within(draws, 100.0) == 2 / 5
    assert sb.chance_within(draws, 100.0, tol=0.4) == 4 / 5   # all but 200
    assert sb.chance_within(np.full(8, 300.0), 300.0) == 1.0
    assert sb.sim_quantile(draws, 100.0) == 1 / 5 and sb.sim_quantile(draws, 250.0) == 1.0
    assert sb.prediction_band(np.arange(11.0)) == (1.0, 9.0)


@pytest.mark.slow
def test_the_expected_share_within_the_target_is_reported_where_the_prediction_is_random(quick_df):
    ok = quick_df[quick_df["status"] == "ok"]
    random = ok["pred_low_s"].notna()
    assert ok.loc[random, "pred_chance"].between(0, 1).all() and ok.loc[random, "sim_quantile"].between(0, 1).all()
    assert ok.loc[~random, "pred_chance"].isna().all() and ok.loc[~random, "sim_quantile"].isna().all()
    # The band holds the middle 80% of the draws, so a simulated makespan inside it sits between them.
    inside = random & ok["sim_s"].between(ok["pred_low_s"], ok["pred_high_s"])
    assert ok.loc[inside, "sim_quantile"].between(0.1 - 1e-9, 0.9 + 1e-9).all()
    md = sb.render(quick_df)
    assert "| expected within ±10% |" in md and "instances per decile" in md
    eng = sb._summary(ok[ok["policy"] == "engine_aware"])
    assert eng["expected"] == pytest.approx(ok.loc[ok["policy"] == "engine_aware", "pred_chance"].mean())
    assert "pred_chance" in sb.to_csv_frame(quick_df).columns


def test_slower_than_another_counts_faster_plans_that_honour_k():
    import pandas as pd

    rows = [  # instance, policy, status, sim_s, respects_k
        ("a", "engine_aware", "ok", 100.0, True), ("a", "round_robin", "ok", 90.0, True),
        ("a", "fifo", "ok", 80.0, False),                      # faster, but breaks K: no count
        ("b", "engine_aware", "ok", 100.0, True), ("b", "round_robin", "ok", 100.0, True),   # a tie
        ("b", "fifo", "ok", 120.0, False),
        ("c", "engine_aware", "n/a", math.nan, True), ("c", "round_robin", "ok", 50.0, True)]
    df = pd.DataFrame(rows, columns=["instance", "policy", "status", "sim_s", "respects_k"])
    got = dict(zip(zip(df.instance, df.policy), sb.beaten(df)))
    assert got == {("a", "engine_aware"): True, ("a", "round_robin"): False, ("a", "fifo"): False,
                   ("b", "engine_aware"): False, ("b", "round_robin"): False, ("b", "fifo"): True,
                   ("c", "engine_aware"): False, ("c", "round_robin"): False}


@pytest.mark.slow
def test_slower_than_another_is_what_explain_scheduler_losses_finds(quick_df):
    from benchmarks.scheduler.losses import losses

    csv = sb.to_csv_frame(quick_df)
    flags = sb.beaten(csv)
    eng = csv[(csv["policy"] == "engine_aware") & flags]
    assert sorted(eng["instance"]) == sorted(i for i, *_ in losses(csv))
    md = sb.render(quick_df)
    assert "| slower than another |" in md
    row = next(line for line in md.splitlines() if line.startswith("| all | engine_aware |"))
    assert row.split("|")[-3].strip() == str(len(eng))


@pytest.mark.slow
def test_write_produces_both_files(tmp_path):
    md = sb.write(tmp_path, families=("generated",), policies=["round_robin"], quick=True, progress=None)
    assert (tmp_path / "scheduler_bench.md").read_text() == md
    assert (tmp_path / "scheduler_bench.csv").read_text().startswith("family,n_workers,instance,policy")


def test_the_paper_family_is_skipped_without_shared_data(monkeypatch, tmp_path):
    monkeypatch.setattr(sb, "SHARED_DATA", tmp_path / "absent")
    assert sb.paper_instances(0, quick=True) == []


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["--seed", "-1"], "--seed must be >= 0 (got -1)"),
    (["--policies", "nope"], "--policies: unknown nope; choose from"),
    # every instance was counted twice (6/6 of 3) in the table
    (["--policies", "round_robin", "ilp", "round_robin"], "--policies names round_robin more than once"),
    (["--out", "FILE"], "is a file, not a directory"),
])
def test_bad_arguments_are_one_line_before_any_work(tmp_path, args, message):
    import subprocess
    import sys
    from pathlib import Path

    (tmp_path / "f").write_text("x")
    args = [str(tmp_path / "f") if a == "FILE" else a for a in args]
    root = Path(__file__).resolve().parents[3]
    r = subprocess.run([sys.executable, "-m", "benchmarks.scheduler", "--quick", *args], cwd=root,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_instances_in_parallel_give_the_same_rows(quick, quick_df):
    """--jobs: each row is a pure function of its instance, so the table is the same; the progress
    lines come as instances finish, one per instance."""
    lines = []
    par = sb.bench(quick, jobs=2, progress=lines.append)
    assert sb.to_csv_frame(par).equals(sb.to_csv_frame(quick_df))
    assert len(lines) == len(quick) and lines[-1].startswith(f"[{len(quick)}/{len(quick)}]")
