"""Greedy longest-processing-time: sessions by descending predicted cost, each to the worker with
the least predicted load. No replication."""
from mosaic.plan import Plan
from mosaic.problem import StageProblem
from mosaic.schedulers.common import make_plan
from mosaic.schedulers.registry import SchedulerParams, register


@register("least_loaded")
def least_loaded(problem: StageProblem, params: SchedulerParams) -> Plan:
    load = [0.0] * problem.n_workers
    assignment: dict[int, list] = {}
    for d in sorted(problem.models, key=lambda d: (-(d.load_s + d.session_s), d.model)):
        w = min(problem.fits[d.model], key=lambda k: (load[k], k))
        load[w] += d.load_s + d.session_s
        assignment.setdefault(w, []).append((d.model, d.request_ids))
    return make_plan(problem, "least_loaded", assignment)
