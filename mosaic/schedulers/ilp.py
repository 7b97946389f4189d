"""The paper's joint placement + assignment ILP (Pyomo, solved by HiGHS).

min C  s.t.  sum_n X[m,n] = N_m;  X[m,n] <= N_m Y[m,n];  1 <= sum_n Y[m,n] <= R_m;
             sum_m Y[m,n] <= K;   C >= sum_m l_m Y[m,n] + tau_m X[m,n]   for every worker n.
"""
from __future__ import annotations

import math
import time

import pyomo.environ as pyo
from pyomo.contrib.solver.common.factory import SolverFactory
from pyomo.contrib.solver.common.results import SolutionStatus

from mosaic.errors import ConfigError
from mosaic.plan import Plan, SolverInfo
from mosaic.problem import StageProblem
from mosaic.schedulers.common import make_plan, split_counts
from mosaic.schedulers.least_loaded import least_loaded
from mosaic.schedulers.registry import SchedulerParams, register


def replication_caps(problem: StageProblem, params: SchedulerParams) -> dict[str, int]:
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


def _k(problem: StageProblem, params: SchedulerParams) -> int:
    k = params.max_models_per_worker
    return len(problem.models) if k is None else k


def build_model(problem: StageProblem, params: SchedulerParams) -> pyo.ConcreteModel:
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
        d_of[m].load_s * b.Y[m, w] + d_of[m].per_request_s * b.X[m, w] for m in b.M))
    mdl.obj = pyo.Objective(expr=mdl.C, sense=pyo.minimize)
    return mdl


@register("ilp")
def ilp(problem: StageProblem, params: SchedulerParams) -> Plan:
    k = _k(problem, params)
    plan_params = {"K": k, "time_limit_s": params.time_limit_s, "mip_gap": params.mip_gap}
    if not problem.models:
        return make_plan(problem, "ilp", {}, SolverInfo("empty", 0.0, 0.0, 0.0, 0.0), plan_params)
    mdl = build_model(problem, params)
    solver = SolverFactory("highs")
    t0 = time.perf_counter()
    res = solver.solve(mdl, time_limit=params.time_limit_s, rel_gap=params.mip_gap,
                       raise_exception_on_nonoptimal_result=False, load_solutions=False)
    solve_s = time.perf_counter() - t0
    status = res.termination_condition.name
    if res.solution_status not in (SolutionStatus.optimal, SolutionStatus.feasible):
        if "infeasible" in status.lower():
            raise ConfigError(f"ILP infeasible ({status}): no placement satisfies K="
                              f"{k}, the replication caps and the memory limits; raise "
                              "scheduler.max_models_per_worker or scheduler.replication_cap")
        # No incumbent within the time limit: keep serving with the greedy plan (which honours K),
        # and say so.
        fallback = least_loaded(problem, params)
        info = SolverInfo(f"{status}: no incumbent, fell back to least_loaded", solve_s, None, None, None)
        return make_plan(problem, "ilp", {w.worker: [(s.model, s.request_ids) for s in w.sessions]
                                          for w in fallback.workers}, info, plan_params)
    res.solution_loader.load_vars()
    objective = res.incumbent_objective
    bound = res.objective_bound
    gap = (objective - bound) / objective if objective and bound is not None else 0.0
    info = SolverInfo(status, solve_s, objective, bound, max(0.0, gap))

    assignment: dict[int, list] = {}
    for d in problem.models:
        counts = {w: int(round(pyo.value(mdl.X[d.model, w]))) for w in range(problem.n_workers)}
        for w, ids in split_counts(d.request_ids, counts).items():
            assignment.setdefault(w, []).append((d.model, ids))
    return make_plan(problem, "ilp", assignment, info, plan_params)
