"""Greedy longest-processing-time: sessions by descending predicted cost, each to the worker with
the least predicted load. No replication. Honours K (max models per worker) when it is set."""
from mosaic.core.errors import ConfigError
from mosaic.plan import Plan
from mosaic.costs.problem import StageProblem
from mosaic.schedulers.common import make_plan
from mosaic.config.schema import SchedulerConfig
from mosaic.schedulers.registry import register


@register("least_loaded", reads=("max_models_per_worker", "cost_model", "shard_cost"))
def least_loaded(problem: StageProblem, params: SchedulerConfig) -> Plan:
    load = [0.0] * problem.n_workers
    assignment: dict[int, list] = {}
    k_max = params.max_models_per_worker
    for d in sorted(problem.models, key=lambda d: (-(d.load_s + d.session_s), d.model)):
        room = [w for w in problem.fits[d.model] if k_max is None or len(assignment.get(w, [])) < k_max]
        if not room:
            raise ConfigError(f"least_loaded: no worker has room for {d.model} under "
                              f"K={k_max}; raise scheduler.max_models_per_worker")
        w = min(room, key=lambda k: (load[k], k))
        load[w] += d.load_s + d.session_s
        assignment.setdefault(w, []).append((d.model, d.request_ids))
    return make_plan(problem, "least_loaded", assignment,
                     params=None if k_max is None else {"K": k_max})
