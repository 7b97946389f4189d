"""One session per model, in order of the model's first request; each goes whole to the worker
predicted to become free first."""
from mosaic.plan import Plan
from mosaic.costs.problem import StageProblem
from mosaic.schedulers.common import make_plan
from mosaic.config.schema import SchedulerConfig
from mosaic.schedulers.registry import register


@register("fifo", reads=("cost_model", "shard_cost",))
def fifo(problem: StageProblem, params: SchedulerConfig) -> Plan:
    free_at = [0.0] * problem.n_workers
    assignment: dict[int, list] = {}
    for d in sorted(problem.models, key=lambda d: d.first_seen):
        w = min(problem.fits[d.model], key=lambda k: (free_at[k], k))
        free_at[w] += d.load_s + d.session_s
        assignment.setdefault(w, []).append((d.model, d.request_ids))
    return make_plan(problem, "fifo", assignment)
