"""engine_aware: plans on session curves; valid, canonical, never predicted worse than a baseline."""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

from mosaic.config.schema import SchedulerConfig
from mosaic.core.errors import ConfigError
from mosaic.costs.problem import ModelDemand, StageProblem
from mosaic.costs.session_curve import SessionCurve
from mosaic.schedulers import schedule
from mosaic.costs.problem import predict_makespan
from mosaic.schedulers.engine_aware import _from_plan, baselines, lower_bound, predicted_makespan
from mosaic.workload.types import Request
from tests.helpers import needs_shared


def demand(name, n, load, per_request, first=0, cv=0.0):
    """A model whose session curve has per-request cost per_request[x] at grid point x, and a
    spread of cv times its mean."""
    xs = tuple(sorted(per_request))
    # With a spread: a right-skewed standardised shape (most draws a little short, one far long).
    curve = SessionCurve(xs, tuple(per_request[x] for x in xs),
                         tuple(cv * x * per_request[x] for x in xs) if cv else (),
                         ((1, (-0.5, -0.5, -0.5, 1.5)),) if cv else ())
    ids = tuple(f"q{i}/{name}" for i in range(n))
    return ModelDemand(name, ids, load, curve(n), first, curve=curve)


def problem(models, n_workers):
    return StageProblem("expert", tuple(models), n_workers, {d.model: frozenset(range(n_workers)) for d in models})


def requests(p):
    return [Request(rid, rid.split("/")[0], d.model, 100, "expert") for d in p.models for rid in d.request_ids]


def plan_of(p, **params):
    return schedule("engine_aware", p, requests(p), SchedulerConfig(name="engine_aware", **params))


def shards(plan):
    return sorted((w.worker, s.model, len(s.request_ids)) for w in plan.workers for s in w.sessions)


def test_a_long_model_is_split_when_its_curve_says_replicas_pay():
    # T(100) = 100 s, T(50) = 60 s: two replicas of 5 + 60 s beat one of 5 + 100 s.
    p = problem([demand("A", 100, 5.0, {1: 10.0, 50: 1.2, 100: 1.0})], 2)
    plan = plan_of(p)
    assert shards(plan) == [(0, "A", 50), (1, "A", 50)]
    assert plan.predicted_makespan_s == pytest.approx(65.0)
    assert plan.solver.bound == pytest.approx(max((5 + 100) / 2, 5 + 10))


def test_tail_bound_models_are_not_split():
    # Each model's session is its longest request: T(50) ~ T(100). Replicating buys nothing, so
    # each model gets a worker of its own, instead of the proportional split's promise of half.
    tail = {1: 95.0, 50: 1.9, 100: 0.96}
    p = problem([demand("A", 100, 20.0, tail), demand("B", 100, 20.0, tail, 100)], 2)
    plan = plan_of(p)
    assert shards(plan) == [(0, "A", 100), (1, "B", 100)]
    assert plan.predicted_makespan_s == pytest.approx(20 + 96)


def test_requests_shift_off_the_worker_that_also_loads_a_second_model():
    lin = {1: 1.0, 200: 1.0}
    p = problem([demand("A", 200, 10.0, lin), demand("B", 20, 40.0, {1: 1.0, 20: 1.0}, 5)], 2)
    plan = plan_of(p, max_models_per_worker=2)
    loads = [w.predicted_s for w in plan.workers]
    assert max(loads) - min(loads) <= 1.0 + 1e-9          # balanced to one request's cost
    assert sum(n for _, m, n in shards(plan) if m == "A") == 200
    assert plan.predicted_makespan_s == pytest.approx((10 + 10 + 40 + 220) / 2, abs=1.0)


def test_k_is_honoured_and_infeasible_k_is_a_config_error():
    ms = [demand(f"M{i}", 30, 3.0, {1: 2.0, 30: 1.0}, i) for i in range(5)]
    plan = plan_of(problem(ms, 3), max_models_per_worker=2)
    assert max(len(w.sessions) for w in plan.workers) <= 2
    with pytest.raises(ConfigError, match="K\\*N = 1\\*3 = 3 worker slots for 5 models"):
        plan_of(problem(ms, 3), max_models_per_worker=1)


curve_points = st.lists(st.floats(0.2, 20.0), min_size=2, max_size=4)


@st.composite
def problems(draw):
    n_workers = draw(st.integers(1, 6))
    models = []
    for i in range(draw(st.integers(1, 7))):
        n = draw(st.integers(1, 120))
        costs = sorted(draw(curve_points), reverse=True)   # per-request cost falls with x
        xs = sorted({1, n, *[max(1, n * (j + 1) // len(costs)) for j in range(len(costs))]})
        # As build_curve guarantees: T non-decreasing and T / x non-increasing.
        t = np.maximum.accumulate([costs[min(j, len(costs) - 1)] * x for j, x in enumerate(xs)])
        c = np.minimum.accumulate(t / np.asarray(xs, dtype=float))
        per = {x: float(cj) for x, cj in zip(xs, c)}
        models.append(demand(f"M{i}", n, draw(st.floats(0.0, 60.0)), per, i, draw(st.sampled_from([0.0, 0.1, 0.4]))))
    k = draw(st.one_of(st.none(), st.integers(1, 3)))
    if k is not None and k * n_workers < len(models):
        k = None
    return problem(models, n_workers), k


@given(problems())
def test_plans_are_valid_canonical_and_never_worse_than_a_baseline(case):
    p, k = case
    p = p.canonical()   # the costs every policy plans on (schedule() rounds them to the microsecond)
    plan = plan_of(p, max_models_per_worker=k)          # schedule() validates coverage, fits and K
    again = plan_of(p, max_models_per_worker=k)
    assert shards(plan) == shards(again) and [w.sessions for w in plan.workers] == [w.sessions for w in again.workers]
    kk = k or len(p.models)
    bound = lower_bound(p, kk)
    assert plan.predicted_makespan_s >= bound * (1 - 1e-9)
    assert plan.solver.bound <= plan.predicted_makespan_s
    for name, state in baselines(p, SchedulerConfig(max_models_per_worker=k), kk):
        assert plan.predicted_makespan_s <= predicted_makespan(p, state) * (1 + 1e-9), name
    # Its prediction is its own cost model applied to what it returns: each worker's mean and
    # spread, the makespan their expected largest (never below the largest mean).
    cost = {d.model: d for d in p.models}
    for w in plan.workers:
        assert w.predicted_s == pytest.approx(sum(cost[s.model].replica_s(len(s.request_ids))
                                                  for s in w.sessions))
        assert w.predicted_sd_s == pytest.approx(math.sqrt(sum(cost[s.model].replica_sd(len(s.request_ids)) ** 2
                                                               for s in w.sessions)))
    means = [w.predicted_s for w in plan.workers]
    again = predict_makespan([[(cost[s.model], len(s.request_ids)) for s in w.sessions] for w in plan.workers])[2]
    assert plan.predicted_makespan_s == (max(means) if again is None else again)
    assert plan.predicted_makespan_s >= max(means) * (1 - 1e-9)
    assert _from_plan(p, plan, kk) is not None


def test_random_replicas_are_priced_at_their_expected_largest():
    # A heavy-tailed model (spread 30% of its mean) and a steady one on 4 workers. Split over
    # several workers, the heavy model's makespan is the largest of their draws, above their mean.
    heavy = demand("R", 400, 10.0, {1: 20.0, 100: 2.0, 200: 1.6, 400: 1.5}, 0, cv=0.3)
    steady = demand("I", 400, 10.0, {1: 2.0, 400: 0.2}, 1)
    plan = plan_of(problem([heavy, steady], 4))
    means = [w.predicted_s for w in plan.workers]
    assert plan.predicted_makespan_s > max(means) + 1.0
    assert plan.solver.objective == pytest.approx(plan.predicted_makespan_s)
    assert plan.solver.bound <= max(means)
    # Against an independent Monte Carlo of the same replicas (each replica's draw uniform over
    # its shape plus a normal kernel of Silverman's bandwidth, variance kept; replicas independent).
    rng = np.random.default_rng(7)
    shape = np.array([-0.5, -0.5, -0.5, 1.5])
    h = 1.06 * 4 ** -0.2
    cost = {d.model: d for d in (heavy, steady)}
    sims = np.zeros((20000, 4))
    for w in plan.workers:
        for s in w.sessions:
            d, x = cost[s.model], len(s.request_ids)
            z = (shape[rng.integers(0, 4, 20000)] + h * rng.standard_normal(20000)) / math.sqrt(1 + h * h)
            sims[:, w.worker] += np.maximum(0, d.replica_s(x) + d.replica_sd(x) * z) if d.curve.shapes else d.replica_s(x)
    assert plan.predicted_makespan_s == pytest.approx(sims.max(axis=1).mean(), rel=0.02)


def test_replica_s_without_a_curve_is_the_affine_split():
    d = ModelDemand("A", tuple(f"q{i}" for i in range(10)), 5.0, 100.0, 0, fixed_s=20.0)
    assert d.replica_s(0) == 0 and d.replica_s(5) == pytest.approx(5 + 20 + 8 * 5)
    assert math.isclose(d.replica_s(10), 105.0)   # the whole T_m, plus one load


def test_length_hints_spread_the_longest_requests_over_the_replicas():
    from dataclasses import replace

    from mosaic.schedulers.engine_aware import deal

    d = demand("A", 8, 1.0, {1: 1.0, 8: 1.0})
    # Stream order puts the two long requests (ids 0 and 1) on one replica; the hints split them.
    hinted = replace(d, length_hints=(9000.0, 8000.0, 100.0, 100.0, 120.0, 90.0, 110.0, 100.0))
    stream = deal(d, {0: 4, 1: 4})
    assert sorted(map(len, stream.values())) == [4, 4]
    spread = deal(hinted, {0: 4, 1: 4})
    assert sorted(map(len, spread.values())) == [4, 4]
    holds = {w: {i for i, rid in enumerate(d.request_ids) if rid in ids} for w, ids in spread.items()}
    assert all(len(h & {0, 1}) == 1 for h in holds.values())
    assert all(list(ids) == sorted(ids, key=d.request_ids.index) for ids in spread.values())  # stream order kept
    # Without hints, or with one replica, it is the interleaved stream share.
    from mosaic.schedulers.common import split_counts
    assert deal(d, {0: 4, 1: 4}) == split_counts(d.request_ids, {0: 4, 1: 4})
    assert deal(hinted, {0: 8}) == split_counts(d.request_ids, {0: 8})


def test_synthetic_workloads_have_no_category_signal():
    from mosaic.run.builder import build_run, compose
    from mosaic.run.pipeline import length_hints

    r = build_run(compose(["workload=synth_small"]))
    assert length_hints(list(r.workload.expert_requests()), r.workload) == {}


@needs_shared
def test_category_hints_are_the_calibration_splits_category_means():
    from mosaic.run.builder import build_run, compose
    from mosaic.run.pipeline import MIN_CATEGORY_ANSWERS, length_hints

    r = build_run(compose(["workload=mmlu_pro", "workload.n_queries=200"]))
    wl = r.workload
    hints = length_hints(list(wl.expert_requests()), wl)
    category = {q.id: q.category for q in wl.queries}
    assert len(hints) == len(wl.expert_requests())
    for req in wl.expert_requests():
        stats = wl.calibration[req.model]
        n, mean = stats.by_category.get(category[req.query_id], (0, 0.0))
        assert hints[req.id] == (mean if n >= MIN_CATEGORY_ANSWERS else stats.mean_output)
    assert len({round(v) for v in hints.values()}) > len(wl.expert_models)   # categories differ
