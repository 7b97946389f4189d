"""Every worker loads every model; each model's requests are split evenly across workers."""
from mosaic.plan import Plan
from mosaic.costs.problem import StageProblem
from mosaic.schedulers.common import even_counts, fitting, make_plan, split_counts
from mosaic.config.schema import SchedulerConfig
from mosaic.schedulers.registry import register


@register("data_parallel", reads=())
def data_parallel(problem: StageProblem, params: SchedulerConfig) -> Plan:
    assignment: dict[int, list] = {}
    for d in problem.models:
        workers = fitting(problem, d.model)[: max(1, d.n)]
        for w, ids in split_counts(d.request_ids, even_counts(d.n, workers)).items():
            assignment.setdefault(w, []).append((d.model, ids))
    return make_plan(problem, "data_parallel", assignment)
