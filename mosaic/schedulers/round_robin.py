"""The paper's baseline: model m on worker (m mod N), all of its requests there."""
from mosaic.plan import Plan
from mosaic.problem import StageProblem
from mosaic.schedulers.common import make_plan
from mosaic.schedulers.registry import SchedulerParams, register


@register("round_robin")
def round_robin(problem: StageProblem, params: SchedulerParams) -> Plan:
    assignment: dict[int, list] = {}
    n = problem.n_workers
    for i, d in enumerate(problem.models):
        # On a heterogeneous cluster, step on to the next worker the model fits.
        w = next((i + j) % n for j in range(n) if (i + j) % n in problem.fits[d.model])
        assignment.setdefault(w, []).append((d.model, d.request_ids))
    return make_plan(problem, "round_robin", assignment)
