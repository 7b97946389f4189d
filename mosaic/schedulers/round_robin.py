"""The paper's baseline (5.1): model m on worker (m mod N), all of its requests there, where m
counts the experts in the order they first appear in the query stream (rr_order=first_seen, the
paper's rule). rr_order=pool counts them in the fixed pool order instead."""
from mosaic.plan import Plan
from mosaic.costs.problem import StageProblem
from mosaic.schedulers.common import make_plan
from mosaic.config.schema import SchedulerConfig
from mosaic.schedulers.registry import register


def rr_sequence(problem: StageProblem, order: str) -> list:
    """The models in the order round robin deals them out; pool order breaks first-seen ties."""
    if order == "pool":
        return list(problem.models)
    return sorted(problem.models, key=lambda d: d.first_seen)   # stable: ties keep pool order


@register("round_robin", reads=("rr_order",))
def round_robin(problem: StageProblem, params: SchedulerConfig) -> Plan:
    assignment: dict[int, list] = {}
    n = problem.n_workers
    for i, d in enumerate(rr_sequence(problem, params.rr_order)):
        # On a heterogeneous cluster, step on to the next worker the model fits.
        w = next((i + j) % n for j in range(n) if (i + j) % n in problem.fits[d.model])
        assignment.setdefault(w, []).append((d.model, d.request_ids))
    return make_plan(problem, "round_robin", assignment)
