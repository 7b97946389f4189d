"""Tests for the scheduler core: plan validity, ILP optimality, baseline semantics, errors.

Problems are built directly as StageProblem instances (no profiles). Plans are checked by an
independent checker here (not only by mosaic.plan.validate_plan), and the ILP is compared against
brute-force enumeration on small instances and against every baseline on random ones.
"""
from __future__ import annotations

import itertools
import math
import random
from collections import Counter
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mosaic.core.errors import ConfigError
from mosaic.plan import Plan, PlanError, Session, SolverInfo, WorkerPlan, validate_plan
from mosaic.costs.problem import ModelDemand, StageProblem
from mosaic.config.schema import SchedulerConfig
from mosaic.schedulers import available, get_scheduler, schedule
from mosaic.schedulers.common import even_counts, split_counts
from mosaic.schedulers.counts import makespan, violations
from mosaic.schedulers.greedy import greedy_counts
from mosaic.schedulers.ilp import lower_bound, replication_caps
from mosaic.workload.types import Request

POLICIES = ["ilp", "round_robin", "fifo", "least_loaded", "data_parallel"]
BASELINES = [p for p in POLICIES if p != "ilp"]
REL = 1e-3   # the ILP solves to mip_gap=1e-4; allow a little more
ABS = 1e-6

FAST = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FAST_ILP = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------

def rid(i: int, j: int) -> str:
    return f"q{j}/m{i}"


def make_problem(specs, n_workers, fits=None, first_seen=None, names=None, canonical=True) -> StageProblem:
    """specs: [(n_requests, load_s, session_s)] in canonical model order. canonical: the costs as
    every policy sees them (StageProblem.canonical, to the microsecond), so that expected values
    computed here from the problem are the policy's own."""
    models = []
    for i, (n, load, session) in enumerate(specs):
        name = names[i] if names else f"m{i}"
        models.append(ModelDemand(name, tuple(f"q{j}/{name}" for j in range(n)), float(load),
                                  float(session), first_seen[i] if first_seen is not None else i))
    if fits is None:
        fits = {d.model: frozenset(range(n_workers)) for d in models}
    problem = StageProblem("expert", tuple(models), n_workers, fits)
    return problem.canonical() if canonical else problem


def requests_for(problem: StageProblem) -> list[Request]:
    return [Request(r, r.split("/")[0], d.model, 100, "expert")
            for d in problem.models for r in d.request_ids]


def worker_time(problem: StageProblem, sessions) -> float:
    return sum(problem.demand(s.model).load_s
               + problem.demand(s.model).per_request_s * len(s.request_ids) for s in sessions)


def placement(plan: Plan) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for wp in plan.workers:
        for s in wp.sessions:
            out.setdefault(s.model, set()).add(wp.worker)
    return out


def models_per_worker(plan: Plan) -> list[int]:
    return [len({s.model for s in wp.sessions}) for wp in plan.workers]


def satisfies(plan: Plan, caps: dict[str, int], k: int | None) -> bool:
    place = placement(plan)
    if any(len(ws) > caps[m] for m, ws in place.items()):
        return False
    return k is None or max(models_per_worker(plan), default=0) <= k


def check_plan(plan: Plan, problem: StageProblem, k: int | None = None,
               caps: dict[str, int] | None = None) -> None:
    """Independent plan checker (does not rely on validate_plan)."""
    assert [wp.worker for wp in plan.workers] == list(range(problem.n_workers))
    model_of = {r: d.model for d in problem.models for r in d.request_ids}
    seen: Counter[str] = Counter()
    for wp in plan.workers:
        for s in wp.sessions:
            assert s.request_ids, f"empty session of {s.model} on worker {wp.worker}"
            assert wp.worker in problem.fits[s.model], (s.model, wp.worker)
            for r in s.request_ids:
                assert model_of[r] == s.model, (r, s.model)
                seen[r] += 1
        names = [s.model for s in wp.sessions]
        assert len(names) == len(set(names)), f"worker {wp.worker} has two sessions of one model"
        assert wp.predicted_s == pytest.approx(worker_time(problem, wp.sessions), rel=1e-9, abs=1e-9)
    assert set(seen) == set(model_of), "some request is missing"
    assert all(c == 1 for c in seen.values()), "some request is scheduled twice"
    assert plan.predicted_makespan_s == pytest.approx(
        max((wp.predicted_s for wp in plan.workers), default=0.0))
    if k is not None:
        assert max(models_per_worker(plan), default=0) <= k
    if caps is not None:
        for m, ws in placement(plan).items():
            assert len(ws) <= caps[m], (m, ws, caps[m])


def k_feasible(problem: StageProblem, k: int | None) -> bool:
    """Is there a placement of each model on one fitting worker with <= K models per worker?"""
    if k is None:
        return True
    for choice in itertools.product(*(sorted(problem.fits[d.model]) for d in problem.models)):
        if max(Counter(choice).values(), default=0) <= k:
            return True
    return False


def brute_force_makespan(problem: StageProblem, caps: dict[str, int], k: int | None) -> float:
    """min over all count matrices X (respecting fits, replication caps and K) of
    max_n sum_m (l_m [X>0] + tau_m X[m,n])."""
    n_w = problem.n_workers
    per_model = []
    for d in problem.models:
        opts = []
        for vec in itertools.product(range(d.n + 1), repeat=n_w):
            if sum(vec) != d.n:
                continue
            support = [w for w, x in enumerate(vec) if x > 0]
            if any(w not in problem.fits[d.model] for w in support) or len(support) > caps[d.model]:
                continue
            opts.append(vec)
        per_model.append(opts)
    best = math.inf
    for combo in itertools.product(*per_model):
        if k is not None and any(sum(1 for vec in combo if vec[w] > 0) > k for w in range(n_w)):
            continue
        span = max(sum(d.load_s * (vec[w] > 0) + d.per_request_s * vec[w]
                       for d, vec in zip(problem.models, combo)) for w in range(n_w))
        best = min(best, span)
    return best


# ---------------------------------------------------------------------------------------------
# strategies
# ---------------------------------------------------------------------------------------------

# 0.0 (free replication) is drawn as a boundary value now and then; drawing it often makes the
# MIP highly symmetric and slow, and test_replication_caps_formula covers it explicitly.
# Tiny positive loads are snapped to 0.0 so T/l stays finite (see test_replication_caps_tiny_load).
loads = st.floats(0.0, 40.0, allow_nan=False, allow_infinity=False).map(
    lambda x: 0.0 if x < 1e-3 else x)
sessions = st.floats(0.05, 400.0, allow_nan=False, allow_infinity=False)


@st.composite
def problems(draw, min_models=1, max_models=6, min_workers=1, max_workers=4, max_requests=30,
             hetero=None):
    m = draw(st.integers(min_models, max_models))
    n_w = draw(st.integers(min_workers, max_workers))
    specs = [(draw(st.integers(1, max_requests)), draw(loads), draw(sessions)) for _ in range(m)]
    first_seen = draw(st.lists(st.integers(0, 3 * m), min_size=m, max_size=m))
    het = draw(st.booleans()) if hetero is None else hetero
    fits = None
    if het:
        fits = {f"m{i}": frozenset(draw(st.sets(st.integers(0, n_w - 1), min_size=1)))
                for i in range(m)}
    return make_problem(specs, n_w, fits, first_seen)


@st.composite
def problem_and_k(draw, **kw):
    """A problem and a K with K*N >= M (or None)."""
    problem = draw(problems(**kw))
    m, n_w = len(problem.models), problem.n_workers
    k = draw(st.one_of(st.none(), st.integers(max(1, math.ceil(m / n_w)), max(1, m))))
    return problem, k


# ---------------------------------------------------------------------------------------------
# 1. plan validity
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("policy", BASELINES)
@FAST
@given(problem=problems())
def test_baseline_plans_are_valid(policy, problem):
    plan = schedule(policy, problem, requests_for(problem))
    assert plan.policy == policy and plan.stage == "expert"
    check_plan(plan, problem)


@FAST_ILP
@given(pk=problem_and_k())
def test_ilp_plan_is_valid_and_respects_k_and_caps(pk):
    problem, k = pk
    params = SchedulerConfig(max_models_per_worker=k, time_limit_s=2.0)  # validity needs no optimum
    if not k_feasible(problem, k):
        with pytest.raises(ConfigError, match="infeasible"):
            schedule("ilp", problem, requests_for(problem), params)
        return
    plan = schedule("ilp", problem, requests_for(problem), params)
    caps = replication_caps(problem, params)
    check_plan(plan, problem, k=k if k is not None else len(problem.models), caps=caps)
    assert plan.params["K"] == (k if k is not None else len(problem.models))


@FAST_ILP
@given(problem=problems(hetero=False), data=st.data())
def test_ilp_respects_explicit_replication_cap(problem, data):
    cap = data.draw(st.integers(1, problem.n_workers))
    params = SchedulerConfig(replication_cap=cap, time_limit_s=2.0)
    caps = replication_caps(problem, params)
    assert all(1 <= caps[d.model] <= min(cap, d.n) for d in problem.models)
    plan = schedule("ilp", problem, requests_for(problem), params)
    check_plan(plan, problem, caps=caps)


def test_replication_caps_formula():
    # T/l = 10 -> clamp to N=4; T/l = 2.5 -> 2; T/l < 1 -> 1; l = 0 -> N; few requests -> n;
    # fits on only 2 workers -> 2
    problem = make_problem([(20, 1.0, 10.0), (20, 2.0, 5.0), (20, 10.0, 1.0), (20, 0.0, 3.0),
                            (2, 0.1, 10.0), (20, 0.1, 10.0)], 4)
    problem = replace(problem, fits={**problem.fits, "m5": frozenset({1, 3})})
    assert replication_caps(problem, SchedulerConfig()) == {
        "m0": 4, "m1": 2, "m2": 1, "m3": 4, "m4": 2, "m5": 2}
    assert replication_caps(problem, SchedulerConfig(replication_cap=3)) == {
        "m0": 3, "m1": 3, "m2": 3, "m3": 3, "m4": 2, "m5": 2}


def test_replication_caps_tiny_load():
    problem = make_problem([(3, 1e-310, 1.0)], 2)
    assert replication_caps(problem, SchedulerConfig()) == {"m0": 2}
    plan = schedule("ilp", problem, requests_for(problem))
    check_plan(plan, problem)


@pytest.fixture
def small():
    problem = make_problem([(3, 1.0, 6.0), (2, 1.0, 2.0), (1, 0.5, 1.0)], 2,
                           fits={"m0": frozenset({0, 1}), "m1": frozenset({0, 1}),
                                 "m2": frozenset({1})})
    plan = Plan("expert", "hand", (
        WorkerPlan(0, (Session("m0", ("q0/m0", "q1/m0", "q2/m0")), Session("m1", ("q0/m1",)))),
        WorkerPlan(1, (Session("m1", ("q1/m1",)), Session("m2", ("q0/m2",)))),
    ))
    return problem, requests_for(problem), {m: set(w) for m, w in problem.fits.items()}, plan


def test_validate_plan_accepts_good_plan(small):
    problem, reqs, fits, plan = small
    assert validate_plan(plan, reqs, fits) is plan
    assert validate_plan(plan, reqs, fits, max_models_per_worker=2) is plan


def _with_sessions(plan, worker, sessions):
    workers = list(plan.workers)
    workers[worker] = replace(workers[worker], sessions=tuple(sessions))
    return replace(plan, workers=tuple(workers))


def test_validate_plan_rejects_duplicate(small):
    problem, reqs, fits, plan = small
    bad = _with_sessions(plan, 1, [Session("m1", ("q1/m1", "q0/m1")), Session("m2", ("q0/m2",))])
    with pytest.raises(PlanError, match="twice"):
        validate_plan(bad, reqs, fits)


def test_validate_plan_rejects_missing(small):
    problem, reqs, fits, plan = small
    bad = _with_sessions(plan, 0, [Session("m0", ("q0/m0", "q2/m0")), Session("m1", ("q0/m1",))])
    with pytest.raises(PlanError, match="not scheduled"):
        validate_plan(bad, reqs, fits)


def test_validate_plan_rejects_wrong_model(small):
    problem, reqs, fits, plan = small
    bad = _with_sessions(plan, 0, [Session("m0", ("q0/m0", "q1/m0", "q2/m0", "q0/m1"))])
    with pytest.raises(PlanError, match="is in a m0 session"):
        validate_plan(bad, reqs, fits)


def test_validate_plan_rejects_model_where_it_does_not_fit(small):
    problem, reqs, fits, plan = small
    bad = _with_sessions(plan, 0, [Session("m0", ("q0/m0", "q1/m0", "q2/m0")),
                                   Session("m1", ("q0/m1",)), Session("m2", ("q0/m2",))])
    bad = _with_sessions(bad, 1, [Session("m1", ("q1/m1",))])
    with pytest.raises(PlanError, match="does not fit"):
        validate_plan(bad, reqs, fits)


def test_validate_plan_rejects_too_many_models(small):
    problem, reqs, fits, plan = small
    with pytest.raises(PlanError, match="more than K=1"):
        validate_plan(plan, reqs, fits, max_models_per_worker=1)


def test_validate_plan_rejects_unknown_request(small):
    problem, reqs, fits, plan = small
    bad = _with_sessions(plan, 1, [Session("m1", ("q1/m1", "q9/m1")), Session("m2", ("q0/m2",))])
    with pytest.raises(PlanError, match="unknown request"):
        validate_plan(bad, reqs, fits)


def test_plan_error_is_config_error():
    assert issubclass(PlanError, ConfigError)


# ---------------------------------------------------------------------------------------------
# 2. ILP optimality against brute force
# ---------------------------------------------------------------------------------------------

def test_ilp_known_optimum():
    # a: 3 requests at 3 s each + 1 s load; b: 1 request of 1 s + 2 s load. Split a 1/2 -> 7 s.
    problem = make_problem([(3, 1.0, 9.0), (1, 2.0, 1.0)], 2)
    plan = schedule("ilp", problem, requests_for(problem))
    assert plan.predicted_makespan_s == pytest.approx(7.0, rel=1e-6)
    assert brute_force_makespan(problem, replication_caps(problem, SchedulerConfig()), None) == 7.0
    # With no replication allowed the best is a alone (10 s) and b elsewhere.
    plan1 = schedule("ilp", problem, requests_for(problem), SchedulerConfig(replication_cap=1))
    assert plan1.predicted_makespan_s == pytest.approx(10.0, rel=1e-6)


def test_ilp_with_a_fixed_session_part_replicates_only_when_it_pays():
    # a: 100 requests, l = 10 s, T = 200 s; b: 10 requests, l = 10 s, T = 20 s; 2 workers.
    # Proportional (the paper's): tau_a = 2 s. a split 42/58 with b beside the 42:
    # max(10 + 84 + 10 + 20, 10 + 116) = 126 s, better than a alone (210 s).
    problem = make_problem([(100, 10.0, 200.0), (10, 10.0, 20.0)], 2)
    plan = schedule("ilp", problem, requests_for(problem))
    assert plan.predicted_makespan_s == pytest.approx(126.0, rel=1e-6)
    assert len(placement(plan)["m0"]) == 2
    # Affine, 180 s of a's T fixed per replica: a replica costs 10 + 180 + 0.2 x, so two replicas
    # cost at least 190 + 30 (b) + ... > 210 = a alone; a stays on one worker, b on the other.
    fixed = replace(problem, models=(replace(problem.models[0], fixed_s=180.0), problem.models[1]))
    assert fixed.models[0].per_request_s == pytest.approx(0.2)
    plan = schedule("ilp", fixed, requests_for(fixed))
    assert plan.predicted_makespan_s == pytest.approx(210.0, rel=1e-6)
    assert len(placement(plan)["m0"]) == 1 and placement(plan)["m0"] != placement(plan)["m1"]
    # Greedy and the bound price the fixed part the same way.
    caps = replication_caps(fixed, SchedulerConfig())
    assert makespan(fixed, greedy_counts(fixed, caps, 2)) >= 210.0 - 1e-9
    assert lower_bound(fixed, caps) <= 210.0 + 1e-9


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problem=problems(min_models=2, max_models=3, min_workers=2, max_workers=3, max_requests=4),
       data=st.data())
def test_ilp_matches_brute_force(problem, data):
    m, n_w = len(problem.models), problem.n_workers
    k = data.draw(st.one_of(st.none(), st.integers(math.ceil(m / n_w), m)), label="K")
    cap = data.draw(st.one_of(st.none(), st.integers(1, n_w)), label="replication_cap")
    params = SchedulerConfig(max_models_per_worker=k, replication_cap=cap)
    caps = replication_caps(problem, params)
    best = brute_force_makespan(problem, caps, k)
    if best == math.inf:
        with pytest.raises(ConfigError, match="infeasible"):
            schedule("ilp", problem, requests_for(problem), params)
        return
    plan = schedule("ilp", problem, requests_for(problem), params)
    check_plan(plan, problem, k=k, caps=caps)
    got = plan.predicted_makespan_s
    assert got <= best * (1 + REL) + ABS, (got, best)
    assert got >= best - ABS, (got, best)
    assert plan.solver.bound <= best + ABS, "the reported bound must be a true lower bound"
    assert lower_bound(problem, caps) <= best + ABS


# ---------------------------------------------------------------------------------------------
# 3. ILP never worse than the baselines
# ---------------------------------------------------------------------------------------------

@FAST_ILP
@given(problem=problems())
def test_ilp_beats_all_baselines_when_unconstrained(problem):
    params = SchedulerConfig(replication_cap=problem.n_workers, max_models_per_worker=None)
    reqs = requests_for(problem)
    ilp = schedule("ilp", problem, reqs, params).predicted_makespan_s
    for policy in BASELINES:
        base = schedule(policy, problem, reqs, params).predicted_makespan_s
        assert ilp <= base * (1 + REL) + ABS, (policy, ilp, base)


@FAST_ILP
@given(problem=problems())
def test_ilp_beats_feasible_baselines_with_default_params(problem):
    params = SchedulerConfig()
    reqs = requests_for(problem)
    plan = schedule("ilp", problem, reqs, params)
    ilp = plan.predicted_makespan_s
    caps = replication_caps(problem, params)
    # Lower bounds: all work spread evenly; and each model alone with its best replication.
    assert ilp >= problem.lower_bound_s * (1 - 1e-9) - ABS
    for d in problem.models:
        assert ilp >= d.load_s + d.per_request_s * math.ceil(d.n / caps[d.model]) - ABS
    compared = 0
    for policy in BASELINES:
        base_plan = schedule(policy, problem, reqs, params)
        if policy in ("round_robin", "fifo", "least_loaded"):
            # one session per model: always inside the ILP's feasible set when K is None
            assert satisfies(base_plan, caps, None), policy
        if satisfies(base_plan, caps, None):
            compared += 1
            assert ilp <= base_plan.predicted_makespan_s * (1 + REL) + ABS, (policy, ilp)
    assert compared >= 3


@pytest.mark.slow
@FAST_ILP
@given(pk=problem_and_k(hetero=False))
def test_ilp_beats_feasible_baselines_with_k(pk):
    problem, k = pk
    params = SchedulerConfig(max_models_per_worker=k)
    reqs = requests_for(problem)
    ilp = schedule("ilp", problem, reqs, params).predicted_makespan_s
    caps = replication_caps(problem, params)
    for policy in BASELINES:
        base_plan = schedule(policy, problem, reqs, params)
        if satisfies(base_plan, caps, k):
            assert ilp <= base_plan.predicted_makespan_s * (1 + REL) + ABS, (policy, ilp)


# ---------------------------------------------------------------------------------------------
# 4. baseline semantics
# ---------------------------------------------------------------------------------------------

def sessions_of(plan: Plan) -> list[list[tuple[str, tuple[str, ...]]]]:
    return [[(s.model, s.request_ids) for s in wp.sessions] for wp in plan.workers]


@pytest.mark.parametrize("order", ["first_seen", "pool"])
def test_round_robin_model_i_on_worker_i_mod_n(order):
    # first-seen order equals pool order here, so both rules agree
    problem = make_problem([(2, 1, 1), (3, 1, 1), (1, 1, 1), (4, 1, 1), (2, 1, 1)], 3)
    plan = schedule("round_robin", problem, requests_for(problem), SchedulerConfig(rr_order=order))
    d = {m.model: m.request_ids for m in problem.models}
    assert sessions_of(plan) == [[("m0", d["m0"]), ("m3", d["m3"])],
                                 [("m1", d["m1"]), ("m4", d["m4"])],
                                 [("m2", d["m2"])]]


def test_round_robin_first_seen_order_differs_from_pool_order():
    # pool order A, B, C, D, E; the stream first shows D, then B, E, A, C
    problem = make_problem([(1, 1, 1)] * 5, 2, first_seen=[6, 1, 9, 0, 4], names=list("ABCDE"))
    first = schedule("round_robin", problem, requests_for(problem))   # the default rule
    assert [[m for m, _ in ws] for ws in sessions_of(first)] == [["D", "E", "C"], ["B", "A"]]
    pool = schedule("round_robin", problem, requests_for(problem), SchedulerConfig(rr_order="pool"))
    assert [[m for m, _ in ws] for ws in sessions_of(pool)] == [["A", "C", "E"], ["B", "D"]]


PAPER_POOL = ["LlamaR1", "QwenR1", "Gemma", "Exaone", "GLM", "Qwen"]


def test_round_robin_reproduces_paper_fig2b_placement():
    # Fig. 2b (MMLU-Pro, round robin, 4 GPUs): W0 Gemma+Exaone, W1 QwenR1+GLM, W2 Qwen, W3 LlamaR1.
    # A stream first showing Gemma, QwenR1, Qwen, LlamaR1, Exaone, GLM gives exactly that under
    # m -> m mod N in first-seen order; the fixed pool order cannot (it puts LlamaR1 on W0).
    stream = ["Gemma", "QwenR1", "Qwen", "LlamaR1", "Exaone", "GLM"]
    problem = make_problem([(3, 40, 300)] * 6, 4, names=PAPER_POOL,
                           first_seen=[stream.index(m) for m in PAPER_POOL])
    plan = schedule("round_robin", problem, requests_for(problem))
    fig2b = [{"Gemma", "Exaone"}, {"QwenR1", "GLM"}, {"Qwen"}, {"LlamaR1"}]
    assert [{m for m, _ in ws} for ws in sessions_of(plan)] == fig2b
    pool = schedule("round_robin", problem, requests_for(problem), SchedulerConfig(rr_order="pool"))
    assert [{m for m, _ in ws} for ws in sessions_of(pool)] != fig2b


@FAST
@given(problem=problems(), order=st.sampled_from(["first_seen", "pool"]))
def test_round_robin_property(problem, order):
    plan = schedule("round_robin", problem, requests_for(problem), SchedulerConfig(rr_order=order))
    n_w = problem.n_workers
    expected: list[list] = [[] for _ in range(n_w)]
    sequence = list(problem.models)
    if order == "first_seen":   # stable sort: ties keep pool order
        sequence.sort(key=lambda d: d.first_seen)
    for i, d in enumerate(sequence):
        w = next((i + j) % n_w for j in range(n_w) if (i + j) % n_w in problem.fits[d.model])
        if problem.fits[d.model] == frozenset(range(n_w)):
            assert w == i % n_w
        expected[w].append((d.model, d.request_ids))
    assert sessions_of(plan) == expected


def test_fifo_by_first_seen_to_earliest_free_worker():
    # costs (load + session): A=5, B=10, C=3, D=4; stream order B, C, A, D.
    problem = make_problem([(1, 1, 4), (2, 2, 8), (1, 1, 2), (3, 1, 3)], 2,
                           first_seen=[2, 0, 1, 3], names=["A", "B", "C", "D"])
    plan = schedule("fifo", problem, requests_for(problem))
    # B -> w0 (free at 10); C -> w1 (3); A -> w1 (8); D -> w1 (8 < 10) -> 12
    assert [[m for m, _ in ws] for ws in sessions_of(plan)] == [["B"], ["C", "A", "D"]]
    assert [wp.predicted_s for wp in plan.workers] == pytest.approx([10.0, 12.0])
    # least_loaded on the same problem sorts by cost instead: B, A, D, C
    ll = schedule("least_loaded", problem, requests_for(problem))
    # B -> w0 (10); A -> w1 (5); D -> w1 (9); C -> w1 (12)
    assert [[m for m, _ in ws] for ws in sessions_of(ll)] == [["B"], ["A", "D", "C"]]


@FAST
@given(problem=problems())
def test_fifo_property(problem):
    plan = schedule("fifo", problem, requests_for(problem))
    free = [0.0] * problem.n_workers
    expected: list[list] = [[] for _ in range(problem.n_workers)]
    for d in sorted(problem.models, key=lambda d: d.first_seen):   # stable: ties in canonical order
        w = min(sorted(problem.fits[d.model]), key=lambda k: (free[k], k))
        free[w] += d.load_s + d.session_s
        expected[w].append((d.model, d.request_ids))
    assert sessions_of(plan) == expected
    for wp in plan.workers:   # each worker serves its sessions in stream order
        fs = [problem.demand(s.model).first_seen for s in wp.sessions]
        assert fs == sorted(fs)


def test_least_loaded_lpt():
    # canonical order differs from cost order on purpose; costs D=3, C=5, A=10, B=8
    problem = make_problem([(1, 0.5, 2.5), (2, 1, 4), (3, 1, 9), (2, 2, 6)], 2,
                           names=["D", "C", "A", "B"])
    plan = schedule("least_loaded", problem, requests_for(problem))
    # A -> w0 (10); B -> w1 (8); C -> w1 (13); D -> w0 (13)
    assert [[m for m, _ in ws] for ws in sessions_of(plan)] == [["A", "D"], ["B", "C"]]
    assert [wp.predicted_s for wp in plan.workers] == pytest.approx([13.0, 13.0])


@FAST
@given(problem=problems())
def test_least_loaded_property(problem):
    plan = schedule("least_loaded", problem, requests_for(problem))
    place = placement(plan)
    assert all(len(ws) == 1 for ws in place.values()), "least_loaded must never replicate"
    load = [0.0] * problem.n_workers
    expected: list[list] = [[] for _ in range(problem.n_workers)]
    for d in sorted(problem.models, key=lambda d: (-(d.load_s + d.session_s), d.model)):
        w = min(sorted(problem.fits[d.model]), key=lambda k: (load[k], k))
        load[w] += d.load_s + d.session_s
        expected[w].append((d.model, d.request_ids))
    assert sessions_of(plan) == expected
    for wp in plan.workers:   # placed by descending cost
        costs = [problem.demand(s.model).load_s + problem.demand(s.model).session_s
                 for s in wp.sessions]
        assert costs == sorted(costs, reverse=True)


def test_data_parallel_example():
    problem = make_problem([(7, 1, 7), (2, 1, 2)], 3)
    plan = schedule("data_parallel", problem, requests_for(problem))
    got = sessions_of(plan)
    assert [len(ids) for m, ids in [s for s in sum(got, []) if s[0] == "m0"]] == [3, 2, 2]
    # 7 requests over 3 replicas, interleaved in stream order
    assert got[0][0] == ("m0", ("q0/m0", "q3/m0", "q6/m0"))
    # only 2 requests: only the first 2 workers load m1
    assert placement(plan)["m1"] == {0, 1}


@FAST
@given(problem=problems())
def test_data_parallel_property(problem):
    plan = schedule("data_parallel", problem, requests_for(problem))
    place = placement(plan)
    for d in problem.models:
        fit = sorted(problem.fits[d.model])
        assert place[d.model] == set(fit[: d.n]), "every fitting worker (up to one per request)"
        counts = [len(s.request_ids) for wp in plan.workers for s in wp.sessions
                  if s.model == d.model]
        assert sum(counts) == d.n
        assert max(counts) - min(counts) <= 1
        if d.n >= len(fit):
            assert place[d.model] == set(fit)
        order = {r: i for i, r in enumerate(d.request_ids)}
        for wp in plan.workers:
            for s in wp.sessions:
                if s.model == d.model:
                    idx = [order[r] for r in s.request_ids]
                    assert idx == sorted(idx), "each replica keeps stream order"


def test_split_and_even_counts():
    ids = tuple(f"r{i}" for i in range(5))
    assert even_counts(5, [2, 0, 1]) == {2: 2, 0: 2, 1: 1}
    assert split_counts(ids, {0: 3, 1: 0, 2: 2}) == {0: ("r0", "r2", "r4"), 2: ("r1", "r3")}
    with pytest.raises(AssertionError):
        split_counts(ids, {0: 1})


# ---------------------------------------------------------------------------------------------
# 5. errors and edge cases
# ---------------------------------------------------------------------------------------------

def test_unknown_scheduler_lists_available():
    assert set(POLICIES) <= set(available())
    with pytest.raises(ConfigError) as e:
        get_scheduler("nope")
    msg = str(e.value)
    assert "nope" in msg
    for name in POLICIES:
        assert name in msg
    problem = make_problem([(1, 1, 1)], 1)
    with pytest.raises(ConfigError):
        schedule("nope", problem, requests_for(problem))


def test_ilp_k_times_n_below_m_raises():
    problem = make_problem([(2, 1, 1)] * 5, 2)
    with pytest.raises(ConfigError, match="K") as e:
        schedule("ilp", problem, requests_for(problem), SchedulerConfig(max_models_per_worker=2))
    assert "2*2" in str(e.value)
    # K*N == M is feasible
    problem4 = make_problem([(2, 1, 1)] * 4, 2)
    plan = schedule("ilp", problem4, requests_for(problem4), SchedulerConfig(max_models_per_worker=2))
    assert max(models_per_worker(plan)) <= 2


def test_ilp_negative_k_raises():
    problem = make_problem([(2, 1, 1)], 2)
    with pytest.raises(ConfigError, match="max_models_per_worker"):
        schedule("ilp", problem, requests_for(problem), SchedulerConfig(max_models_per_worker=-1))


def test_ilp_zero_k_raises():
    problem = make_problem([(2, 1, 1), (2, 1, 1)], 2)
    with pytest.raises(ConfigError, match="max_models_per_worker"):
        schedule("ilp", problem, requests_for(problem), SchedulerConfig(max_models_per_worker=0))


def test_ilp_infeasible_memory_and_k_raises():
    # K*N >= M, but both models only fit worker 0 and K = 1.
    problem = make_problem([(2, 1, 1), (2, 1, 1)], 2,
                           fits={"m0": frozenset({0}), "m1": frozenset({0})})
    with pytest.raises(ConfigError, match="infeasible"):
        schedule("ilp", problem, requests_for(problem), SchedulerConfig(max_models_per_worker=1))


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("n_workers", [1, 3])
def test_empty_problem_gives_empty_plan(policy, n_workers):
    problem = StageProblem("expert", (), n_workers, {})
    plan = schedule(policy, problem, [])
    assert len(plan.workers) == n_workers
    assert all(wp.sessions == () and wp.predicted_s == 0.0 for wp in plan.workers)
    assert plan.predicted_makespan_s == 0.0
    if policy == "ilp":
        assert plan.solver is not None and plan.solver.status == "empty"


def test_ilp_time_limit_fallback_respects_k_and_says_so():
    # least_loaded would put the three cheap models on one worker, more than K=2
    specs = [(1, 1.0, 10.0), (1, 1.0, 1.0), (1, 1.0, 1.0), (1, 1.0, 1.0)]
    problem = make_problem(specs, 2)
    params = SchedulerConfig(max_models_per_worker=2, time_limit_s=1e-9)
    plan = schedule("ilp", problem, requests_for(problem), params)
    check_plan(plan, problem, k=2, caps=replication_caps(problem, params))
    assert plan.solver.limit == "time_limit"
    assert "wall-clock guard" in plan.solver.fallback and "may differ between runs" in plan.solver.fallback


# ---------------------------------------------------------------------------------------------
# 6. SolverInfo
# ---------------------------------------------------------------------------------------------

@FAST_ILP
@given(problem=problems(max_models=4, max_workers=3, max_requests=12))
def test_ilp_solver_info(problem):
    params = SchedulerConfig()
    plan = schedule("ilp", problem, requests_for(problem), params)
    info = plan.solver
    assert isinstance(info, SolverInfo)
    assert isinstance(info.status, str) and info.status
    assert info.source == "ilp" and info.fallback is None and info.limit is None, info
    assert info.solve_s >= 0.0
    assert info.objective is not None and info.bound is not None and info.gap is not None
    # The objective is the returned plan's own predicted makespan, recomputed from its counts.
    assert info.objective == pytest.approx(plan.predicted_makespan_s, rel=1e-12, abs=1e-12)
    assert 0.0 <= info.bound <= info.objective
    assert info.gap == pytest.approx((info.objective - info.bound) / info.objective, rel=1e-9, abs=1e-12)
    # HiGHS stops at mip_rel_gap or at mip_abs_gap (1e-6), on an incumbent feasible to within its
    # primal tolerance (1e-7 per row); the gap of the re-evaluated plan is sound only up to those.
    slack = max(params.mip_gap * info.objective, 1e-6) + 1e-7 * max(1.0, info.objective)
    assert info.objective - info.bound <= slack, info
    assert info.greedy_objective is not None and info.objective <= info.greedy_objective
    assert plan.params == {"K": len(problem.models), "time_limit_s": params.time_limit_s,
                           "mip_gap": params.mip_gap, "node_limit": params.node_limit}


def test_least_loaded_honours_k():
    # Unconstrained, the four light models would pile onto worker 1 next to nothing on worker 0's
    # heavy model; with K=2 no worker may hold more than two models.
    problem = make_problem([(5, 1, 100), (1, 1, 1), (1, 1, 1), (1, 1, 1)], 2)
    free = schedule("least_loaded", problem, requests_for(problem))
    assert max(models_per_worker(free)) == 3
    capped = schedule("least_loaded", problem, requests_for(problem), SchedulerConfig(max_models_per_worker=2))
    assert max(models_per_worker(capped)) == 2
    assert capped.params == {"K": 2}
    with pytest.raises(ConfigError, match="max_models_per_worker"):
        schedule("least_loaded", make_problem([(1, 1, 1)] * 3, 1), requests_for(make_problem([(1, 1, 1)] * 3, 1)),
                 SchedulerConfig(max_models_per_worker=2))


# ---------------------------------------------------------------------------------------------
# 7. parameter validation: one-line ConfigErrors naming the field
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("field, value", [
    ("time_limit_s", 0.0), ("time_limit_s", -1.0), ("time_limit_s", float("nan")), ("time_limit_s", float("inf")),
    ("mip_gap", -1e-4), ("mip_gap", 1.5), ("mip_gap", float("nan")),
    ("replication_cap", 0), ("replication_cap", -2),
    ("max_models_per_worker", 0), ("max_models_per_worker", -1),
    ("node_limit", 0), ("solver_seed", -1), ("rr_order", "random"),
])
def test_scheduler_params_reject_bad_values(field, value):
    with pytest.raises(ConfigError) as e:
        SchedulerConfig(**{field: value})
    msg = str(e.value)
    assert f"scheduler.{field}" in msg and "\n" not in msg
    assert "got" in msg and (";" in msg)   # says what it got and how to fix it


def test_scheduler_params_accept_boundaries():
    SchedulerConfig(time_limit_s=1e-9, mip_gap=0.0, replication_cap=1, max_models_per_worker=1,
                    node_limit=1, rr_order="pool")
    SchedulerConfig(time_limit_s=86400.0, mip_gap=1.0)   # a day; inf is refused (issue 17: no inf setting)


def test_bad_scheduler_params_stop_the_app_before_any_work():
    from mosaic.run.app import run
    from tests.helpers import config
    with pytest.raises(ConfigError, match="scheduler.replication_cap"):
        run(config("workload=synth_small", "scheduler.replication_cap=0"))
    with pytest.raises(ConfigError, match="scheduler.rr_order"):
        run(config("scheduler=round_robin", "scheduler.rr_order=sideways"))


def test_scheduler_configs_document_new_fields():
    from tests.helpers import config
    ilp = config("scheduler=ilp").scheduler
    assert ilp.node_limit >= 1 and ilp.time_limit_s > 0 and ilp.solver_seed == 0
    assert config("scheduler=round_robin").scheduler.rr_order == "first_seen"


# ---------------------------------------------------------------------------------------------
# 8. the ILP's solution is checked, not trusted; every fallback says so
# ---------------------------------------------------------------------------------------------

def test_violations_names_each_broken_constraint():
    problem = make_problem([(4, 1.0, 8.0), (2, 1.0, 2.0), (2, 1.0, 2.0)], 2,
                           fits={"m0": frozenset({0, 1}), "m1": frozenset({0, 1}), "m2": frozenset({1})})
    caps = {"m0": 1, "m1": 2, "m2": 1}
    good = {"m0": {0: 4}, "m1": {1: 2}, "m2": {1: 2}}
    assert violations(problem, good, caps, 2) == []
    assert makespan(problem, good) == pytest.approx(9.0)
    assert "3 requests placed" in violations(problem, {**good, "m0": {0: 3}}, caps, 2)[0]
    assert "fits only" in violations(problem, {**good, "m2": {0: 2}}, caps, 2)[0]
    assert "replication cap" in violations(problem, {**good, "m0": {0: 2, 1: 2}}, caps, 2)[0]
    assert "K = 1" in violations(problem, good, caps, 1)[0]
    assert "non-negative integers" in violations(problem, {**good, "m1": {1: 2.5}}, caps, 2)[0]


@FAST
@given(pk=problem_and_k())
def test_greedy_warm_start_is_feasible(pk):
    problem, k = pk
    k = k if k is not None else len(problem.models)
    caps = replication_caps(problem, SchedulerConfig())
    counts = greedy_counts(problem, caps, k)
    if counts is None:   # only where memory limits leave no room for it
        assert any(f != frozenset(range(problem.n_workers)) for f in problem.fits.values())
        return
    assert violations(problem, counts, caps, k) == []
    assert makespan(problem, counts) >= lower_bound(problem, caps) - ABS


def test_greedy_replicates_the_long_model():
    # one model with 80 s of work and a 1 s load, three short ones: least_loaded cannot split it
    problem = make_problem([(40, 1.0, 80.0), (5, 1.0, 5.0), (5, 1.0, 5.0), (5, 1.0, 5.0)], 4)
    caps = replication_caps(problem, SchedulerConfig())
    counts = greedy_counts(problem, caps, 2)
    assert len(counts["m0"]) == 4
    assert makespan(problem, counts) < 0.5 * schedule("least_loaded", problem, requests_for(problem)).predicted_makespan_s


class _HighsReporting:
    """Make HiGHS report a given outcome while it still solves for real (the pybind class is
    subclassed; its C++ search is untouched)."""

    def __init__(self, monkeypatch, status=None, primal_status=None, solution=None):
        import highspy
        real = highspy.Highs

        class Fake(real):
            def getModelStatus(self):
                return status if status is not None else super().getModelStatus()

            def getInfo(self):
                info = super().getInfo()
                if primal_status is not None:
                    info.primal_solution_status = primal_status
                return info

            def getSolution(self):
                sol = super().getSolution()
                return solution(sol) if solution is not None else sol

        monkeypatch.setattr(highspy, "Highs", Fake)


def test_ilp_uses_a_feasible_solution_when_highs_reports_error(monkeypatch):
    # highspy 1.15.1 sometimes ends a small MIP with status "error" (its own infeasibility flag
    # set) while holding a feasible, optimal solution; it must be checked and used, not dropped.
    import highspy
    _HighsReporting(monkeypatch, status=highspy.HighsModelStatus.kSolveError, primal_status=1)
    problem = make_problem([(3, 1.0, 9.0), (1, 2.0, 1.0)], 2)
    plan = schedule("ilp", problem, requests_for(problem))
    assert plan.solver.status == "error"
    assert plan.solver.source == "ilp" and plan.solver.fallback is None
    assert plan.predicted_makespan_s == pytest.approx(7.0)   # the optimum (see test_ilp_known_optimum)


def test_ilp_rejects_a_solution_that_breaks_coverage_and_says_so(monkeypatch):
    def empty(sol):
        sol.col_value = [0.0] * len(sol.col_value)   # valid-looking, but covers nothing
        return sol

    _HighsReporting(monkeypatch, solution=empty)
    problem = make_problem([(3, 1.0, 9.0), (1, 2.0, 1.0)], 2)
    plan = schedule("ilp", problem, requests_for(problem))
    check_plan(plan, problem)
    assert plan.solver.source == "greedy"
    assert "breaks a constraint" in plan.solver.fallback and "requests placed" in plan.solver.fallback


def test_ilp_without_incumbent_falls_back_loudly(monkeypatch):
    import highspy

    def nothing(sol):
        sol.value_valid = False
        return sol

    _HighsReporting(monkeypatch, status=highspy.HighsModelStatus.kSolveError, primal_status=0,
                    solution=nothing)
    problem = make_problem([(3, 1.0, 9.0), (1, 2.0, 1.0)], 2)
    plan = schedule("ilp", problem, requests_for(problem))
    check_plan(plan, problem)
    assert plan.solver.source == "greedy" and "no incumbent" in plan.solver.fallback
    from mosaic.run.metrics import solver_info
    assert solver_info(plan)["fallback"] == plan.solver.fallback
    assert solver_info(plan)["source"] == "greedy"


def test_ilp_fallback_is_printed_and_in_summary(monkeypatch):
    import highspy
    from mosaic.run.app import format_table, run
    from tests.helpers import config

    def nothing(sol):
        sol.value_valid = False
        return sol

    _HighsReporting(monkeypatch, status=highspy.HighsModelStatus.kSolveError, primal_status=0,
                    solution=nothing)
    out = run(config("workload=synth_small", "scheduler=ilp"))
    assert "no incumbent" in out.summary["solver"]["fallback"]
    assert "ILP FALLBACK" in format_table(out.summary)


# ---------------------------------------------------------------------------------------------
# 9. same problem, same plan, whatever the machine's load
# ---------------------------------------------------------------------------------------------

# The expert stage of the synthetic MedMCQA workload at 8 workers (N_m, l_m, T_m per model): the
# search does not finish within the node limit, which is where a wall-clock limit made plans vary.
MEDMCQA_8 = [(1774, 45.0, 3292.5), (3592, 47.0, 220.5), (2304, 42.0, 274.9), (2041, 46.0, 203.2),
             (2838, 38.0, 213.4)]


def _without_timing(plan: Plan) -> Plan:
    return replace(plan, solver=replace(plan.solver, solve_s=0.0))


def test_ilp_plan_does_not_depend_on_machine_load():
    import subprocess
    import sys
    problem = make_problem(MEDMCQA_8, 8)
    params = SchedulerConfig(max_models_per_worker=2, node_limit=300)
    idle = schedule("ilp", problem, requests_for(problem), params)
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        loaded = schedule("ilp", problem, requests_for(problem), params)
    finally:
        for p in busy:
            p.kill()
            p.wait()
    assert idle.solver.limit == "node_limit", "the deterministic limit, not the clock, must stop it"
    assert _without_timing(idle) == _without_timing(loaded)
    check_plan(idle, problem, k=2, caps=replication_caps(problem, params))
    assert idle.solver.objective <= idle.solver.greedy_objective


# Found by search: on this problem a 1-ulp change of every load and session time makes HiGHS
# return another plan (K=2, 4 workers). Last bits of the costs differ between machines.
ULP_SENSITIVE = [(9, 11.410333333333334, 322.8223333333333), (33, 16.839333333333336, 259.1213333333333),
                 (18, 7.379333333333333, 65.92433333333332), (29, 15.852333333333334, 469.58733333333333)]


def _nudged(problem: StageProblem, direction: float) -> StageProblem:
    def step(x: float) -> float:
        return math.nextafter(x, direction)
    return replace(problem, models=tuple(replace(d, load_s=step(d.load_s), session_s=step(d.session_s),
                                                 fixed_s=step(d.fixed_s)) for d in problem.models))


def _assignment(plan: Plan) -> list:
    return [(wp.worker, [(s.model, s.request_ids, s.workers) for s in wp.sessions]) for wp in plan.workers]


def test_the_ilp_alone_is_sensitive_to_the_costs_last_bits():
    """The fixture the next test relies on: without canonical costs, the ILP's plan moves."""
    from mosaic.schedulers.ilp import ilp
    problem = make_problem(ULP_SENSITIVE, 4, canonical=False)
    params = SchedulerConfig(name="ilp", max_models_per_worker=2)
    plans = [_assignment(ilp(p, params)) for p in (problem, _nudged(problem, math.inf))]
    assert plans[0] != plans[1]


@pytest.mark.parametrize("policy", POLICIES)
def test_plans_do_not_depend_on_the_costs_last_bits(policy):
    problem = make_problem(ULP_SENSITIVE, 4, canonical=False)
    params = SchedulerConfig(name=policy, max_models_per_worker=2 if policy == "ilp" else None)
    plans = [schedule(policy, p, requests_for(problem), params)
             for p in (problem, _nudged(problem, math.inf), _nudged(problem, -math.inf))]
    assert _assignment(plans[0]) == _assignment(plans[1]) == _assignment(plans[2])
    assert plans[0].predicted_makespan_s == plans[1].predicted_makespan_s == plans[2].predicted_makespan_s


def test_canonical_rounds_seconds_to_the_microsecond_and_keeps_the_rest():
    problem = make_problem([(3, 1.23456789, 10.0000004), (2, 0.0, 5.5)], 2, canonical=False)
    problem = replace(problem, models=(replace(problem.models[0], fixed_s=2.0000006), problem.models[1]))
    c = problem.canonical()
    assert [(d.load_s, d.session_s, d.fixed_s) for d in c.models] == [(1.234568, 10.0, 2.000001), (0.0, 5.5, 0.0)]
    assert [d.request_ids for d in c.models] == [d.request_ids for d in problem.models]
    assert c.fits == problem.fits and c.n_workers == problem.n_workers


def test_split_counts_deals_by_largest_share_left_then_lower_worker():
    # The rule, by a direct scan (split_counts keeps a heap of it).
    def scan(ids, counts):
        left = {w: c for w, c in counts.items() if c > 0}
        out = {w: [] for w in left}
        for rid in ids:
            w = max(left, key=lambda k: (left[k] / counts[k], -k))
            out[w].append(rid)
            left[w] -= 1
            if not left[w]:
                del left[w]
        return {w: tuple(v) for w, v in out.items()}
    rng = random.Random(7)
    for _ in range(300):
        counts = {w: rng.choice([0, 1, 2, 3, 7, 50]) for w in rng.sample(range(40), rng.randint(1, 12))}
        ids = tuple(f"r{i}" for i in range(sum(counts.values())))
        assert split_counts(ids, counts) == scan(ids, counts)
