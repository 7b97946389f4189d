"""The MoA pipeline: expert stage -> agreement -> aggregator stage, each scheduled then executed.

This is the only module that talks to both a scheduler and a backend.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from mosaic.run.aggregation import AggregationPolicy, Decision, decide
from mosaic.backends import Backend
from mosaic.cluster import Cluster
from mosaic.costs.predict import build_problem
from mosaic.core.errors import ConfigError
from mosaic.plan import Plan
from mosaic.costs.problem import StageProblem
from mosaic.profiles import ProfileSet
from mosaic.workload.prompts import aggregator_prompt
from mosaic.workload.tokens import estimate_tokens
from mosaic.schedulers import SchedulerParams, schedule
from mosaic.costs.tensor_parallel import build_tp_problem
from mosaic.trace import Trace
from mosaic.workload.types import Request, Workload, aggregator_request_id

# aggregation.placement: "tp" = one tensor-parallel aggregator engine over all workers (the
# paper's); "scheduled" = the stage's scheduler places the aggregator like an expert model.
PLACEMENTS = ("tp", "scheduled")

# Tokens of instructions wrapped around the question and the experts' answers.
AGGREGATOR_TEMPLATE_TOKENS = 64


@dataclass(frozen=True)
class StageResult:
    problem: StageProblem
    plan: Plan
    trace: Trace


@dataclass(frozen=True)
class PipelineResult:
    workload: Workload
    expert: StageResult
    aggregator: StageResult
    decisions: tuple[Decision, ...]
    final_answers: dict[str, str | None]
    placement: str = "tp"   # how the aggregator stage ran (aggregation.placement)


def run_stage(stage: str, requests: list[Request], model_order, scheduler: str,
              params: SchedulerParams, backend: Backend, cluster: Cluster, profiles: ProfileSet,
              workload: Workload, cost_model: str = "auto", shard_cost: str = "proportional") -> StageResult:
    # Costs from the workload's calibration split only, never its outcomes (mosaic/costs/predict.py).
    problem = build_problem(stage, requests, cluster, profiles, model_order, workload.calibration,
                            cost_model, shard_cost)
    plan = schedule(scheduler, problem, requests, params)
    return execute(problem, plan, requests, backend, workload)


def run_tp_stage(stage: str, requests: list[Request], model_order, backend: Backend, cluster: Cluster,
                 profiles: ProfileSet, workload: Workload) -> StageResult:
    """The stage as one tensor-parallel engine per model over every worker, whatever the pipeline's
    scheduler is (the paper's aggregator: the same in both arms)."""
    problem = build_tp_problem(stage, requests, cluster, profiles, model_order)
    plan = schedule("tensor_parallel", problem, requests)
    return execute(problem, plan, requests, backend, workload)


def execute(problem: StageProblem, plan: Plan, requests: list[Request], backend: Backend,
            workload: Workload) -> StageResult:
    stage = problem.stage
    trace = backend.run(plan, {r.id: r for r in requests}, workload.outcomes or None)
    done = {r.request_id for r in trace.requests}
    missing = [r.id for r in requests if r.id not in done]
    if missing or len(trace.requests) != len(requests):
        raise RuntimeError(f"{stage} stage: backend '{trace.backend}' returned {len(trace.requests)} "
                           f"results for {len(requests)} requests; missing e.g. {missing[:3]}")
    return StageResult(problem, plan, trace)


def aggregator_requests(workload: Workload, expert_trace: Trace, run_ids: set[str],
                        max_prompt: int) -> list[Request]:
    """The aggregator reads the question plus every expert sample's full answer (a model recruited
    twice contributes both samples, as two responses). When the experts' texts
    are known (a real engine generating naturally) the prompt is built from them; otherwise its
    length is the question plus the experts' output tokens."""
    expert_tokens: dict[str, int] = defaultdict(int)
    texts: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for r in expert_trace.requests:
        expert_tokens[r.query_id] += r.output_tokens
        if r.text is not None:
            texts[r.query_id].append((r.model, r.text))
    out = []
    for q in workload.queries:
        if q.id not in run_ids:
            continue
        prompt = aggregator_prompt(q.text, texts[q.id]) if texts[q.id] else None
        n = estimate_tokens(prompt) if prompt else q.prompt_tokens + expert_tokens[q.id] + AGGREGATOR_TEMPLATE_TOKENS
        out.append(Request(aggregator_request_id(q.id), q.id, workload.aggregator, min(max_prompt, n),
                           "aggregator", prompt))
    return out


def run_pipeline(workload: Workload, cluster: Cluster, profiles: ProfileSet, scheduler: str,
                 params: SchedulerParams, backend: Backend, policy: AggregationPolicy,
                 cost_model: str = "auto",
                 placement: str = "tp", shard_cost: str = "proportional") -> PipelineResult:
    if not workload.queries:
        raise ConfigError("workload: no queries to run")
    if placement not in PLACEMENTS:
        raise ConfigError(f"aggregation.placement: '{placement}' is not one of {', '.join(PLACEMENTS)}")
    if placement == "tp" and cluster.n > 1:  # before the expert stage, not after it
        profiles.engine.tp().speedup(cluster.n)
    expert = run_stage("expert", list(workload.expert_requests()), workload.expert_models,
                       scheduler, params, backend, cluster, profiles, workload, cost_model, shard_cost)
    answers: dict[str, list[str | None]] = {q.id: [] for q in workload.queries}
    for r in expert.trace.requests:
        answers[r.query_id].append(r.answer)
    decisions = tuple(decide(policy, answers))
    to_run = {d.query_id for d in decisions if not d.skip}
    # Leave half the context for the aggregator's own answer.
    agg_reqs = aggregator_requests(workload, expert.trace, to_run, profiles.engine.max_model_len // 2)
    if placement == "tp":
        aggregator = run_tp_stage("aggregator", agg_reqs, (workload.aggregator,), backend, cluster,
                                  profiles, workload)
    else:
        aggregator = run_stage("aggregator", agg_reqs, (workload.aggregator,), scheduler, params,
                               backend, cluster, profiles, workload, cost_model, shard_cost)
    agg = {r.query_id: r for r in aggregator.trace.requests}
    # A query whose aggregator call failed (an error, not a wrong answer) falls back to its experts'
    # majority, if there is one.
    final = {d.query_id: (d.majority if d.skip or agg[d.query_id].error else agg[d.query_id].answer)
             for d in decisions}
    return PipelineResult(workload, expert, aggregator, decisions, final, placement)
