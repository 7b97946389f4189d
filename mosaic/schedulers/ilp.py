"""The paper's joint placement + assignment ILP (Pyomo, solved by HiGHS).

min C  s.t.  sum_n X[m,n] = N_m;  X[m,n] <= N_m Y[m,n];  1 <= sum_n Y[m,n] <= R_m;
             sum_m Y[m,n] <= K;   C >= sum_m l_m Y[m,n] + tau_m X[m,n]   for every worker n.

With `scheduler.shard_cost=affine` (not the paper's) l_m becomes l_m + f_m, the part of T_m each
replica pays whatever its share (mosaic/costs/predict.py), and tau_m = (T_m - f_m) / N_m.

Reproducible by construction: it plans on the problem's canonical costs (rounded to the
microsecond by `schedule`, so last-bit differences between machines cannot pick another of several
near-tied plans), HiGHS runs single-threaded with a fixed seed and stops at a node limit (a count
of work, not of seconds), so the plan is the same on an idle or a loaded machine;
the wall-clock limit is only a safety net and says so when it binds. The search starts from a
replicating greedy plan and the better of the two is returned. Whatever the solver's status, its
solution is rounded and checked against every constraint here before it is used, and any plan
that is not a verified ILP solution says why in SolverInfo.fallback.
"""
from __future__ import annotations

import logging
import math
import time

import pyomo.environ as pyo
from pyomo.contrib.appsi.base import TerminationCondition
from pyomo.contrib.appsi.solvers.highs import Highs

from mosaic.core.errors import ConfigError
from mosaic.plan import Plan, SolverInfo
from mosaic.costs.problem import StageProblem
from mosaic.schedulers.common import make_plan
from mosaic.schedulers.counts import Counts, counts_plan, makespan, violations
from mosaic.schedulers.greedy import greedy_counts
from mosaic.schedulers.least_loaded import least_loaded
from mosaic.config.schema import SchedulerConfig
from mosaic.schedulers.registry import register

# HiGHS prints its licence banner through this logger at INFO on every solve, which filled each
# run.log; warnings still show, and `hydra.verbose=pyomo` brings the banner back.
logging.getLogger("pyomo.contrib.appsi.solvers.highs").setLevel(logging.WARNING)


def replication_caps(problem: StageProblem, params: SchedulerConfig) -> dict[str, int]:
    """R_m = clamp(1, floor(T_m / l_m), N): replicate only models whose work dwarfs a reload."""
    caps = {}
    for d in problem.models:
        if params.replication_cap is not None:
            r = params.replication_cap
        elif d.session_s >= problem.n_workers * d.load_s:  # also covers l_m ~ 0 without overflow
            r = problem.n_workers
        else:
            r = math.floor(d.session_s / d.load_s)
        caps[d.model] = max(1, min(r, problem.n_workers, len(problem.fits[d.model]), max(1, d.n)))
    return caps


def _check_feasible(problem: StageProblem, k: int) -> None:
    m, n = len(problem.models), problem.n_workers
    if k < 1:
        raise ConfigError(f"scheduler.max_models_per_worker must be >= 1 (got {k})")
    if k * n < m:
        raise ConfigError(f"ILP infeasible: K*N = {k}*{n} = {k * n} worker slots for {m} models; "
                          "raise scheduler.max_models_per_worker or cluster.n_workers")


def _k(problem: StageProblem, params: SchedulerConfig) -> int:
    k = params.max_models_per_worker
    return len(problem.models) if k is None else k


def build_model(problem: StageProblem, params: SchedulerConfig) -> pyo.ConcreteModel:
    k = _k(problem, params)
    _check_feasible(problem, k)
    caps = replication_caps(problem, params)
    models = [d.model for d in problem.models]
    d_of = {d.model: d for d in problem.models}
    workers = list(range(problem.n_workers))

    mdl = pyo.ConcreteModel("mosaic_ilp")
    mdl.M = pyo.Set(initialize=models, ordered=True)
    mdl.W = pyo.Set(initialize=workers, ordered=True)
    mdl.Y = pyo.Var(mdl.M, mdl.W, within=pyo.Binary)
    mdl.X = pyo.Var(mdl.M, mdl.W, within=pyo.NonNegativeIntegers,
                    bounds=lambda _, m, w: (0, d_of[m].n))
    mdl.C = pyo.Var(within=pyo.NonNegativeReals)
    for m in models:
        for w in workers:
            if w not in problem.fits[m]:
                mdl.Y[m, w].fix(0)
    mdl.coverage = pyo.Constraint(mdl.M, rule=lambda b, m: sum(b.X[m, w] for w in b.W) == d_of[m].n)
    mdl.linking = pyo.Constraint(mdl.M, mdl.W, rule=lambda b, m, w: b.X[m, w] <= d_of[m].n * b.Y[m, w])
    mdl.replicas = pyo.Constraint(mdl.M, rule=lambda b, m: pyo.inequality(
        1, sum(b.Y[m, w] for w in b.W), caps[m]))
    mdl.per_worker = pyo.Constraint(mdl.W, rule=lambda b, w: sum(b.Y[m, w] for m in b.M) <= k)
    mdl.makespan = pyo.Constraint(mdl.W, rule=lambda b, w: b.C >= sum(
        d_of[m].overhead_s * b.Y[m, w] + d_of[m].per_request_s * b.X[m, w] for m in b.M))
    mdl.obj = pyo.Objective(expr=mdl.C, sense=pyo.minimize)
    return mdl


@register("ilp", reads=("max_models_per_worker", "replication_cap", "time_limit_s", "mip_gap",
                          "node_limit", "solver_seed", "cost_model", "shard_cost"))
def ilp(problem: StageProblem, params: SchedulerConfig) -> Plan:
    k = _k(problem, params)
    plan_params = {"K": k, "time_limit_s": params.time_limit_s, "mip_gap": params.mip_gap,
                   "node_limit": params.node_limit}
    if not problem.models:
        return make_plan(problem, "ilp", {}, SolverInfo("empty", 0.0, 0.0, 0.0, 0.0), plan_params)
    _check_feasible(problem, k)
    caps = replication_caps(problem, params)
    t0 = time.perf_counter()
    greedy = greedy_counts(problem, caps, k)
    greedy_s = makespan(problem, greedy) if greedy is not None else None
    mdl = build_model(problem, params)
    if greedy is not None:
        _warm_start(mdl, problem, greedy, greedy_s)
    status, counts, solver_bound = _solve(mdl, problem, params, warm=greedy is not None)
    solve_s = time.perf_counter() - t0
    limit = {"maxIterations": "node_limit", "maxTimeLimit": "time_limit"}.get(status)

    broken = violations(problem, counts, caps, k) if counts is not None else []
    if counts is None and greedy is None and "infeasible" in status.lower():
        raise ConfigError(f"ILP infeasible ({status}): no placement satisfies K={k}, the replication "
                          "caps and the memory limits; raise scheduler.max_models_per_worker or "
                          "scheduler.replication_cap")
    fallback = None
    if counts is not None and not broken and (greedy is None or makespan(problem, counts) <= greedy_s):
        source = "ilp"
    elif greedy is not None:
        why = ("no incumbent" if counts is None else
               f"its solution breaks a constraint ({broken[0]})" if broken else
               "its incumbent is worse than the warm start")
        source, counts = "greedy", greedy
        fallback = f"ILP {status}: {why}; using the greedy warm start"
    else:
        plan = least_loaded(problem, params)   # honours K; raises a ConfigError if it cannot
        info = SolverInfo(status, time.perf_counter() - t0, None, None, None, "least_loaded",
                          f"ILP {status}: no valid solution and no greedy plan; fell back to "
                          "least_loaded", limit)
        return make_plan(problem, "ilp", {w.worker: [(s.model, s.request_ids) for s in w.sessions]
                                          for w in plan.workers}, info, plan_params)
    if limit == "time_limit":
        # The one non-deterministic stop: say so next to (or instead of) any other reason.
        note = (f"the {params.time_limit_s:g} s wall-clock guard stopped the ILP before its "
                f"{params.node_limit}-node limit: this plan may differ between runs")
        fallback = note if fallback is None else f"{fallback}; {note}"
    objective = makespan(problem, counts)
    bound = float(min(objective, max(lower_bound(problem, caps), solver_bound if solver_bound is not None
                                     and math.isfinite(solver_bound) else 0.0)))
    gap = (objective - bound) / objective if objective > 0 else 0.0
    info = SolverInfo(status, solve_s, objective, bound, gap, source, fallback, limit, greedy_s)
    return counts_plan(problem, "ilp", counts, info, plan_params)


def lower_bound(problem: StageProblem, caps: dict[str, int]) -> float:
    """A bound no plan beats: all work spread evenly (each model loaded once), and each model's
    busiest replica when it is spread as widely as R_m allows."""
    each = [d.overhead_s + d.per_request_s * math.ceil(d.n / caps[d.model]) for d in problem.models if d.n]
    return max([problem.lower_bound_s] + each)


def _warm_start(mdl: pyo.ConcreteModel, problem: StageProblem, counts: Counts, c: float) -> None:
    for d in problem.models:
        for w in range(problem.n_workers):
            x = counts[d.model].get(w, 0)
            mdl.X[d.model, w].set_value(x)
            if not mdl.Y[d.model, w].fixed:
                mdl.Y[d.model, w].set_value(int(x > 0))
    mdl.C.set_value(c)


def _solve(mdl: pyo.ConcreteModel, problem: StageProblem, params: SchedulerConfig,
           warm: bool) -> tuple[str, Counts | None, float | None]:
    """Run HiGHS; return its termination condition, its solution rounded to integer counts (or
    None when it has none at all) and its proven bound. The status is not trusted for feasibility:
    HiGHS 1.15 can end in "error" holding a feasible solution, so the caller checks the counts."""
    opt = Highs()
    opt.config.load_solution = False      # a limited or "error" run must not raise
    opt.config.warmstart = warm           # Pyomo's APPSI HiGHS passes variable values as a MIP start
    opt.config.time_limit = params.time_limit_s
    opt.config.mip_gap = params.mip_gap
    opt.highs_options = {"threads": 1, "random_seed": params.solver_seed,
                         "mip_max_nodes": params.node_limit, "output_flag": False}
    res = opt.solve(mdl)
    status = res.termination_condition.name
    bound = res.best_objective_bound
    if res.termination_condition in (TerminationCondition.infeasible,
                                     TerminationCondition.infeasibleOrUnbounded):
        return status, None, None
    try:
        opt.load_vars([mdl.X[m, w] for m in mdl.M for w in mdl.W])
    except RuntimeError:   # HiGHS holds no primal values at all
        return status, None, bound
    counts = {m: {w: int(round(mdl.X[m, w].value)) for w in mdl.W
                  if mdl.X[m, w].value is not None and round(mdl.X[m, w].value) > 0} for m in mdl.M}
    return status, counts, bound
