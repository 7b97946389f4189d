"""One engine per model spanning every worker it fits on (tensor parallelism), models in sequence.

The paper's aggregator stage: a single TP-N instance over all GPUs, identical in both arms, so the
stage's time depends only on which queries reach it. Each session is listed on every worker it
spans; the lead rank is the lowest worker id.
"""
from mosaic.plan import Plan, Session, WorkerPlan
from mosaic.costs.problem import StageProblem
from mosaic.config.schema import SchedulerConfig
from mosaic.schedulers.registry import register


@register("tensor_parallel")
def tensor_parallel(problem: StageProblem, params: SchedulerConfig) -> Plan:
    sessions: dict[int, list[Session]] = {w: [] for w in range(problem.n_workers)}
    predicted = {w: 0.0 for w in range(problem.n_workers)}
    degrees = set()
    for d in problem.models:
        if not d.request_ids:
            continue  # loading a model with nothing to run only costs time
        ranks = tuple(sorted(problem.fits[d.model]))
        degrees.add(len(ranks))
        s = Session(d.model, d.request_ids, ranks)
        for w in ranks:
            sessions[w].append(s)
            predicted[w] += d.load_s + d.session_s
    workers = tuple(WorkerPlan(w, tuple(sessions[w]), predicted[w]) for w in range(problem.n_workers))
    return Plan(problem.stage, "tensor_parallel", workers, None,
                {"tp": float(max(degrees))} if degrees else {})
