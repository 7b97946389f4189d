"""The MoA pipeline: expert stage -> agreement -> aggregator stage, each scheduled then executed.

This is the only module that talks to both a scheduler and a backend.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from mosaic.config.schema import AggregationConfig, RuntimeConfig
from mosaic.run.aggregation import Decision, decide
from mosaic.backends import Backend
from mosaic.cluster import Cluster
from mosaic.costs.predict import admit_requests, attach_curves, attach_hints, build_problem, session_prices
from mosaic.core.errors import ConfigError
from mosaic.core.interrupts import raise_if_interrupted
from mosaic.plan import Plan
from mosaic.runtime import Runtime, make_runtime, stage_inputs
from mosaic.runtime.check import check_trace
from mosaic.costs.problem import StageProblem
from mosaic.profiles import ProfileSet
from mosaic.workload.prompts import AGGREGATOR_TEMPLATE_TOKENS, aggregator_prompt
from mosaic.workload.tokens import CHARS_PER_TOKEN, estimate_tokens
from mosaic.config.schema import SchedulerConfig
from mosaic.schedulers import schedule
from mosaic.schedulers.registry import applied, info
from mosaic.engine import session_runner
from mosaic.costs.tensor_parallel import build_tp_problem
from mosaic.trace import Trace
from mosaic.workload.types import Request, Workload, aggregator_request_id



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
    placement: str   # how the aggregator stage ran (aggregation.placement)
    # Aggregator requests whose prompt (question plus every answer) was cut to engine.aggregator_cap.
    aggregator_prompts_cut: tuple[str, ...] = ()


def plan_stage(stage: str, requests: list[Request], model_order, scheduler: SchedulerConfig,
               placement: str, cluster: Cluster, profiles: ProfileSet,
               workload: Workload) -> tuple[StageProblem, Plan]:
    """The stage's problem and plan, as every run plans it. placement "tp": one tensor-parallel
    engine per model over every worker, whatever the scheduler is (the paper's aggregator, the same
    in both arms); "scheduled": the scheduler's own plan, costed from the workload's calibration
    split only, never its outcomes (mosaic/costs/predict.py)."""
    if placement == "tp":
        problem = build_tp_problem(stage, requests, cluster, profiles, model_order)
        return problem, schedule("tensor_parallel", problem, requests)
    # A cost setting the policy does not read is recorded as not applied (settings_not_applied), so it
    # must not act either (a regression fit a profile lacks would fail a run whose policy never uses it).
    costs = applied(scheduler)
    problem = build_problem(stage, requests, cluster, profiles, model_order, workload.calibration,
                            costs.cost_model, costs.shard_cost)
    if "session_curves" in info(scheduler.name, scheduler.plugin).needs:
        memory = min(w.memory_gib for w in cluster.workers)
        problem = attach_curves(problem, requests, profiles, workload.calibration, memory,
                                session_runner(profiles, memory))
        problem = attach_hints(problem, length_hints(requests, workload))
    return problem, schedule(scheduler.name, problem, requests, scheduler)


# A category's calibration mean is a length signal only with this many answers behind it.
MIN_CATEGORY_ANSWERS = 5


def length_hints(requests: list[Request], workload: Workload) -> dict[str, float]:
    """Per request: its model's mean output on the calibration split's questions of the same
    category, where that split has categories (question and trace workloads); {} otherwise."""
    category = {q.id: q.category for q in workload.queries}
    out = {}
    for r in requests:
        stats = workload.calibration.get(r.model)
        if stats is None or not stats.by_category:
            continue
        n, mean = stats.by_category.get(category.get(r.query_id, ""), (0, 0.0))
        out[r.id] = mean if n >= MIN_CATEGORY_ANSWERS else stats.mean_output
    return out


def run_stage(stage: str, requests: list[Request], model_order, scheduler: SchedulerConfig, placement: str,
              backend: Backend, cluster: Cluster, profiles: ProfileSet, workload: Workload,
              runtime: RuntimeConfig | None = None, seed: int = 0) -> StageResult:
    raise_if_interrupted()   # a Ctrl-C an earlier step's library swallowed: no stage starts after it
    problem, plan = plan_stage(stage, requests, model_order, scheduler, placement, cluster, profiles, workload)
    raise_if_interrupted()
    live = stage_runtime(runtime, problem, plan, requests, workload, scheduler, cluster, profiles, seed)
    return execute(problem, plan, requests, backend, workload, live, scheduler.max_models_per_worker)


def stage_runtime(runtime: RuntimeConfig | None, problem: StageProblem, plan: Plan, requests: list[Request],
                  workload: Workload, scheduler: SchedulerConfig, cluster: Cluster, profiles: ProfileSet,
                  seed: int = 0) -> Runtime | None:
    """The stage's runtime as a run makes it (None: static, the plan's assignment), priced by the
    planner's own session estimates (session_prices; a TP plan's one engine needs none)."""
    if runtime is None or runtime.name == "static":
        return None
    prices = (None if placement_of(plan) == "tp"
              else session_prices(requests, cluster, profiles, workload.calibration, applied(scheduler).cost_model))
    inputs = stage_inputs(problem, requests, length_hints(requests, workload), scheduler.max_models_per_worker,
                          seed, prices)
    return make_runtime(runtime, plan, inputs)


def execute(problem: StageProblem, plan: Plan, requests: list[Request], backend: Backend,
            workload: Workload, runtime: Runtime | None = None,
            max_models_per_worker: int | None = None) -> StageResult:
    """Run the plan on the backend under the runtime (None: the plan's assignment)."""
    stage = problem.stage
    by_id = {r.id: r for r in requests}
    if runtime is None:
        trace = backend.run(plan, by_id, workload.outcomes or None)
    else:
        trace = backend.run(plan, by_id, workload.outcomes or None, runtime)
        # What the runtime decided keeps the plan's invariants (K only where the plan kept it).
        k = max_models_per_worker
        if k is not None and any(len({s.model for s in wp.sessions}) > k for wp in plan.workers):
            k = None
        check_trace(trace, requests, problem.fits if placement_of(plan) != "tp" else None, k)
    done = {r.request_id for r in trace.requests}
    missing = [r.id for r in requests if r.id not in done]
    if missing or len(trace.requests) != len(requests):
        raise RuntimeError(f"{stage} stage: backend '{trace.backend}' returned {len(trace.requests)} "
                           f"results for {len(requests)} requests; missing e.g. {missing[:3]}")
    return StageResult(problem, plan, trace)


def placement_of(plan: Plan) -> str:
    """"tp" where the plan's sessions span several workers (fits then means a TP rank's share)."""
    return "tp" if any(s.tp_size > 1 for wp in plan.workers for s in wp.sessions) else "scheduled"


def aggregator_requests(workload: Workload, expert_trace: Trace, run_ids: set[str],
                        max_prompt: int) -> tuple[list[Request], tuple[str, ...]]:
    """The aggregator reads the question plus every expert sample's full answer (a model recruited
    twice contributes both samples, as two responses). When the experts' texts
    are known (a real engine generating naturally) the prompt is built from them; otherwise its
    length is the question plus the experts' output tokens.

    A prompt longer than max_prompt (engine.aggregator_cap: half the context, the other half is for
    the aggregator's answer) is cut to it: its length, and where there is text each response's
    text to its last part (where an answer states its choice), the responses shortened evenly.
    Returns the requests and the ids of those cut (summary.json admission.aggregator_prompts_cut)."""
    expert_tokens: dict[str, int] = defaultdict(int)
    texts: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for r in expert_trace.requests:
        expert_tokens[r.query_id] += r.output_tokens
        if r.text is not None:
            texts[r.query_id].append((r.model, r.text))
    out, cut = [], []
    for q in workload.queries:
        if q.id not in run_ids:
            continue
        prompt = aggregator_prompt(q.text, texts[q.id]) if texts[q.id] else None
        n = estimate_tokens(prompt) if prompt else q.prompt_tokens + expert_tokens[q.id] + AGGREGATOR_TEMPLATE_TOKENS
        rid = aggregator_request_id(q.id)
        if n > max_prompt:
            cut.append(rid)
            if prompt is not None:
                prompt = _fit_responses(q.text, texts[q.id], max_prompt)
        out.append(Request(rid, q.id, workload.aggregator, min(max_prompt, n), "aggregator", prompt))
    return out, tuple(cut)


def _fit_responses(question: str | None, responses: list[tuple[str, str]], max_prompt: int) -> str:
    """The aggregator's prompt with each response cut to its last `share` characters, the largest
    share (water-filling: a short response is kept whole) for which the prompt fits max_prompt."""
    room = int(max(0, max_prompt - estimate_tokens(aggregator_prompt(question, [(m, "") for m, _ in responses])))
               * CHARS_PER_TOKEN)
    lo, hi = 0, max(len(t) for _, t in responses)
    while lo < hi:   # the largest share whose responses fit the room
        mid = (lo + hi + 1) // 2
        if sum(min(len(t), mid) for _, t in responses) <= room:
            lo = mid
        else:
            hi = mid - 1
    return aggregator_prompt(question, [(m, t[len(t) - min(len(t), lo):]) for m, t in responses])


def run_pipeline(workload: Workload, cluster: Cluster, profiles: ProfileSet, scheduler: SchedulerConfig,
                 backend: Backend, aggregation: AggregationConfig, runtime: RuntimeConfig | None = None,
                 seed: int = 0) -> PipelineResult:
    if not workload.queries:
        raise ConfigError("workload: no queries to run")
    placement = aggregation.placement
    if placement == "tp" and cluster.n > 1:  # before the expert stage, not after it
        profiles.model(workload.aggregator).tp(profiles.engine, cluster.n).speedup(cluster.n)
    # A request the engine cannot serve as asked stops the run here, before any stage (callers that
    # allow truncation, workload.oversize=truncate, pass the already truncated workload: mosaic/run/app.py).
    workload, _ = admit_requests(workload, cluster, profiles, placement)
    expert = run_stage("expert", list(workload.expert_requests()), workload.expert_models, scheduler,
                       "scheduled", backend, cluster, profiles, workload, runtime, seed)
    answers: dict[str, list[str | None]] = {q.id: [] for q in workload.queries}
    for r in expert.trace.requests:
        answers[r.query_id].append(r.answer)
    decisions = tuple(decide(aggregation, answers))
    to_run = {d.query_id for d in decisions if not d.skip}
    agg_reqs, cut = aggregator_requests(workload, expert.trace, to_run, profiles.engine.aggregator_cap)
    aggregator = run_stage("aggregator", agg_reqs, (workload.aggregator,), scheduler, placement, backend,
                           cluster, profiles, workload, runtime, seed)
    agg = {r.query_id: r for r in aggregator.trace.requests}
    # A query whose aggregator call failed (an error, not a wrong answer) falls back to its experts'
    # majority, if there is one.
    final = {d.query_id: (d.majority if d.skip or agg[d.query_id].error else agg[d.query_id].answer)
             for d in decisions}
    return PipelineResult(workload, expert, aggregator, decisions, final, placement, cut)
