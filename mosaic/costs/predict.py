"""Cost predictor: T_m, the predicted wall time of one session serving a model's N_m requests.

The schedulers plan on these predictions, made from calibration data only: the workload's
per-model calibration statistics (mean and max output tokens on the train split,
Workload.calibration), never the test outcomes; the prompts the scheduler can see; the profile.

Two predictors (`cost_model`):
* "regression": the paper's T_m(N_m, mean, max), fitted per model on a multi-N profiling sweep
  (mosaic/profiles/session_cost.py; coefficients in the profile's `session_fit`).
* "analytic": a steady-state reading of the per-step cost model the simulator integrates: a KV- or
  slot-limited batch decodes the bulk of the tokens; the longest request decodes alongside that
  batch at the batch's step time, and whatever it has left when the bulk is done it finishes
  alone. Lengths: the profile's shape rescaled to the calibration mean.
* "auto" (default): the regression where the model's profile has a fit (and the session runs on
  one GPU), else the analytic formula.

How T_m splits over replicas (`shard_cost`):
* "proportional" (default, the paper's): a replica serving x of the N_m requests costs T_m x / N_m.
* "affine": it costs f_m + (T_m - f_m) x / N_m, the chord of the predictor's own T_m(x) between the
  smallest share the cluster allows (N_m / workers) and N_m. A session's longest request decodes
  alone at the end whatever the share, so T_m(x) is concave and a proportional split of a long-tailed
  reasoning model's T_m over-promises what replication gains (results/paper_comparison.md: GPQA's ILP plan is
  predicted at half its simulated wall). Not the paper's formulation: an option, and a variant.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import replace
from typing import Callable, Iterable, Mapping, NoReturn, Sequence

from mosaic.cluster import Cluster
from mosaic.config.schema import COST_MODELS, OVERSIZE_POLICIES, SHARD_COSTS, check_choice
from mosaic.core.errors import ConfigError
from mosaic.costs.problem import ModelDemand, StageProblem
from mosaic.costs.session_curve import RunSession, build_curve
from mosaic.engine import CostModel, usable_kv_tokens
from mosaic.profiles import (EngineProfile, LengthDistribution, ModelProfile, ProfileSet,
                             kv_capacity_tokens)
from mosaic.workload.calibration import calibration_size
from mosaic.workload.tokens import CHARS_PER_TOKEN, estimate_tokens
from mosaic.workload.types import (LengthStats, Request, Workload, aggregator_request_id, expert_request_id,
                                   expert_slots)


KV_WATERMARK = 0.01  # vLLM keeps 1% of KV blocks free at admission


def calibrated_lengths(model: ModelProfile, stats: LengthStats | None) -> LengthDistribution:
    """The profile's length shape at the calibration mean (the profile's own without statistics)."""
    if stats is None:
        return model.output
    target = min(max(stats.mean_output, 1.0), model.output.cap - 1.0)
    return model.output.calibrated_to_mean(target)


def predict_session_s(model: ModelProfile, engine: EngineProfile, memory_gib: float,
                      n: int, mean_prompt: float, tp: int = 1, stats: LengthStats | None = None) -> float:
    """The analytic predictor. tp > 1: one engine over tp GPUs of memory_gib each (TP step
    speedup, combined KV cache). stats: calibration statistics the lengths are scaled to."""
    if n == 0:
        return 0.0
    cm = CostModel(model, engine, tp)
    lengths = calibrated_lengths(model, stats)
    mean_out = lengths.mean()
    # Expected maximum of n draws is about the 1 - 1/(n+1) quantile.
    max_out = lengths.quantile(1.0 - 1.0 / (n + 1))
    kv = kv_capacity_tokens(model, engine, memory_gib, tp) * (1 - KV_WATERMARK)
    # Long sequences stay in the batch longest (length-biased residence), so a running
    # sequence holds on average prompt + E[L^2] / (2 E[L]) tokens of context, not prompt + E[L]/2.
    mean_ctx = mean_prompt + lengths.second_moment() / (2 * mean_out)
    batch = max(1, min(n, engine.max_num_seqs, int(kv // mean_ctx)))
    step_s = cm.decode_base_s(batch) + cm.decode_ms_per_ctx_token * batch * mean_ctx / 1e3
    bulk_s = n * mean_out / batch * step_s
    left = max(0.0, max_out - bulk_s / step_s)
    tail_s = cm.decode_run_s(1, int(mean_prompt + max_out - left), int(math.ceil(left)))
    prefill_s = cm.prefill_s(int(n * mean_prompt), n * mean_prompt**2, n)
    return bulk_s + tail_s + prefill_s


def session_estimate(model: ModelProfile, engine: EngineProfile, memory_gib: float, n: int,
                     mean_prompt: float, stats: LengthStats | None, cost_model: str = "auto",
                     tp: int = 1) -> float:
    """T_m by the chosen predictor (see the module docstring)."""
    check_choice("scheduler.cost_model", cost_model, COST_MODELS)
    fit = model.session_fit
    if cost_model == "analytic" or (cost_model == "auto" and (fit is None or tp != 1)):
        return predict_session_s(model, engine, memory_gib, n, mean_prompt, tp, stats)
    if fit is None:
        raise ConfigError(f"scheduler.cost_model=regression: model {model.name} has no session_fit in its "
                          "profile; run experiments/fit_session_costs.py or use cost_model=auto")
    if tp != 1:
        raise ConfigError(f"scheduler.cost_model=regression: the fit of {model.name} is for one GPU, "
                          f"not a {tp}-way tensor-parallel session; use cost_model=auto")
    if stats is None:   # no calibration set: the profile's mean and the max of a calibration-sized draw
        n_cal = calibration_size(None)
        mean, max_out = model.output.mean(), model.output.quantile(1.0 - 1.0 / (n_cal + 1))
    else:
        n_cal, mean, max_out = stats.n, stats.mean_output, stats.max_output
    return fit.predict(n, mean, max_out, mean_prompt, n_cal)


def session_prices(requests: Sequence[Request], cluster: Cluster, profiles: ProfileSet,
                   calibration: Mapping[str, LengthStats] | None = None,
                   cost_model: str = "auto") -> dict[str, Callable[[int], float]]:
    """model -> n -> the predicted seconds of one session over n of its requests (T_m as build_problem
    prices a whole model, at any count): what a runtime weighs its moves with."""
    calibration = calibration or {}
    by_model, _, order = group_by_model(requests)
    memory = min(w.memory_gib for w in cluster.workers)
    out = {}
    for name in order:
        prof, reqs = profiles.model(name), by_model[name]
        mean_prompt = sum(r.prompt_tokens for r in reqs) / len(reqs)

        def at(n: int, prof=prof, mean_prompt=mean_prompt, stats=calibration.get(name)) -> float:
            return session_estimate(prof, profiles.engine, memory, n, mean_prompt, stats, cost_model)
        out[name] = at
    return out


def fixed_session_s(session_at, n: int, n_workers: int, whole: float) -> float:
    """f_m for shard_cost=affine: the intercept of the chord of T_m(x) (session_at) between
    x = ceil(n / n_workers) and x = n, within [0, T_m(n)]; 0 when the model cannot be split.
    whole: T_m(n), which the caller has already computed as the model's session_s."""
    small = max(1, math.ceil(n / max(1, n_workers)))
    if n <= small:
        return 0.0
    slope = (whole - session_at(small)) / (n - small)
    return min(max(0.0, whole - slope * n), whole)


def fitting_workers(model: ModelProfile, engine: EngineProfile, cluster: Cluster) -> frozenset[int]:
    """Workers that hold the weights plus at least one full-length sequence of KV cache."""
    return frozenset(w.id for w in cluster.workers
                     if kv_capacity_tokens(model, engine, w.memory_gib) >= engine.max_model_len)


def _need_bytes(profiles: ProfileSet, model: str) -> float:
    prof = profiles.model(model)
    return prof.weight_gib * 2**30 + profiles.engine.max_model_len * prof.kv_bytes_per_token


def refuse_unfitting(name: str, prof: ModelProfile, eng: EngineProfile, cluster: Cluster,
                     others: Sequence[str] = ()) -> NoReturn:
    """The one-line error for a model that fits no worker (weights plus one full-length context),
    naming the setting that decides it; `others`: further models that fit no worker either."""
    also = f" (nor do {', '.join(others)})" if others else ""
    if eng.num_gpu_blocks is not None:
        least = -(-eng.max_model_len // eng.block_size)
        raise ConfigError(
            f"model {name}: engine.num_gpu_blocks={eng.num_gpu_blocks} blocks of {eng.block_size} tokens "
            f"hold less than one {eng.max_model_len}-token context (the profile's engine.max_model_len; vLLM "
            f"would not start): raise engine.num_gpu_blocks to at least {least}, or use profiles with a "
            "shorter max_model_len")
    if prof.kv_capacity is not None and prof.kv_capacity < eng.max_model_len:
        raise ConfigError(
            f"model {name}: its profile's measured KV cache holds {prof.kv_capacity} tokens, less than "
            f"one {eng.max_model_len}-token context (the profile's engine.max_model_len): re-profile it with "
            "more KV memory or give the profile a shorter max_model_len")
    kv_gib = eng.max_model_len * prof.kv_bytes_per_token / 2**30
    need = (prof.weight_gib + kv_gib) / eng.gpu_memory_utilization
    raise ConfigError(
        f"model {name} needs {need:.3g} GiB of GPU memory ((weights {prof.weight_gib} GiB + a "
        f"{eng.max_model_len}-token KV cache of {kv_gib:.3g} GiB) / gpu_memory_utilization "
        f"{eng.gpu_memory_utilization}), but no worker has that much{also}: raise "
        f"cluster.memory_gib (now {max(w.memory_gib for w in cluster.workers)}) or drop the model")


def refuse_unfitting_tp(name: str, eng: EngineProfile, memory_gib: float, tp: int) -> NoReturn:
    """The one-line error for a model that does not fit one TP-`tp` engine over the whole cluster."""
    raise ConfigError(f"model {name} does not fit one tensor-parallel engine over all {tp} workers "
                      f"({memory_gib} GiB each) with a {eng.max_model_len}-token KV cache: raise "
                      "cluster.memory_gib or use aggregation.placement=scheduled")


def group_by_model(requests: Sequence[Request], model_order: Iterable[str] = ()
                   ) -> tuple[dict[str, list[Request]], dict[str, int], list[str]]:
    """A stage's requests per model (stream order), each model's first position in the stream,
    and the canonical model order: `model_order` first, then the rest by name."""
    by_model: dict[str, list[Request]] = defaultdict(list)
    first_seen: dict[str, int] = {}
    for i, r in enumerate(requests):
        by_model[r.model].append(r)
        first_seen.setdefault(r.model, i)
    order = [m for m in model_order if m in by_model] + sorted(set(by_model) - set(model_order))
    return by_model, first_seen, order


def build_problem(stage: str, requests: Sequence[Request], cluster: Cluster,
                  profiles: ProfileSet, model_order: Iterable[str] = (),
                  calibration: Mapping[str, LengthStats] | None = None,
                  cost_model: str = "auto", shard_cost: str = "proportional") -> StageProblem:
    """The stage as the scheduler sees it. calibration: per-model statistics of the calibration
    split (Workload.calibration); a model without them is costed from its profile alone."""
    check_choice("scheduler.shard_cost", shard_cost, SHARD_COSTS)
    calibration = calibration or {}
    by_model, first_seen, order = group_by_model(requests, model_order)
    memory = min(w.memory_gib for w in cluster.workers)
    demands, fits = [], {}
    for name in order:
        prof = profiles.model(name)
        fits[name] = fitting_workers(prof, profiles.engine, cluster)
        if not fits[name]:
            refuse_unfitting(name, prof, profiles.engine, cluster)
        reqs = by_model[name]
        mean_prompt = sum(r.prompt_tokens for r in reqs) / len(reqs)

        def session_at(n: int, prof=prof, mean_prompt=mean_prompt, stats=calibration.get(name)) -> float:
            return session_estimate(prof, profiles.engine, memory, n, mean_prompt, stats, cost_model)

        session_s = session_at(len(reqs))
        demands.append(ModelDemand(
            model=name,
            request_ids=tuple(r.id for r in reqs),
            load_s=prof.load_time_s + prof.unload_time_s,  # every session pays both
            session_s=session_s,
            first_seen=first_seen[name],
            fixed_s=(fixed_session_s(session_at, len(reqs), len(fits[name]), session_s)
                     if shard_cost == "affine" else 0.0),
        ))
    return StageProblem(stage=stage, models=tuple(demands), n_workers=cluster.n, fits=fits)


def attach_curves(problem: StageProblem, requests: Sequence[Request], profiles: ProfileSet,
                  calibration: Mapping[str, LengthStats] | None, memory_gib: float,
                  sessions_of: Callable[[str], RunSession]) -> StageProblem:
    """The problem with every model's session curve attached (lengths at the calibration mean)."""
    by_model, _, _ = group_by_model(requests)
    models = []
    for d in problem.models:
        if not d.n:
            models.append(d)
            continue
        prof = profiles.model(d.model)
        lengths = calibrated_lengths(prof, (calibration or {}).get(d.model))
        # A request's context is bounded by what the engine's KV holds too (engine.num_gpu_blocks
        # less the null block may hold a little less than max_model_len): a sampled longer one stalls.
        context = min(profiles.engine.max_model_len, usable_kv_tokens(prof, profiles.engine, memory_gib))
        curve = build_curve(sessions_of(d.model), lengths, [r.prompt_tokens for r in by_model[d.model]], problem.n_workers,
                            context)
        models.append(replace(d, curve=curve))
    return replace(problem, models=tuple(models))


def attach_hints(problem: StageProblem, hints: Mapping[str, float]) -> StageProblem:
    """The problem with per-request length hints on every model all of whose requests have one."""
    if not hints:
        return problem
    models = [replace(d, length_hints=tuple(float(hints[r]) for r in d.request_ids))
              if d.n and all(r in hints for r in d.request_ids) else d for d in problem.models]
    return replace(problem, models=tuple(models))


# ---------------------------------------------------------------- requests the engine cannot serve

def sequence_limit(capacity: int, engine: EngineProfile) -> int:
    """Tokens (prompt + output) one sequence may hold on an engine with `capacity` KV-cache tokens:
    the context window, and the KV cache less the admission watermark (vLLM never admits a sequence
    into its last 1% of blocks; mosaic/engine/v0.py does the same, and stalls on a sequence that cannot
    be readmitted after a preemption)."""
    return min(engine.max_model_len, capacity - int(KV_WATERMARK * capacity))


def _limits(profiles: ProfileSet, cluster: Cluster, placement: str) -> Callable[[str, str], int | None]:
    """(model, stage) -> sequence_limit on the smallest engine the model may run on; None where it
    fits no worker (the stage's planner refuses it then, naming cluster.memory_gib)."""
    engine, memory = profiles.engine, min(w.memory_gib for w in cluster.workers)
    cache: dict[tuple[str, str], int | None] = {}

    def limit(model: str, stage: str) -> int | None:
        if (model, stage) not in cache:
            prof = profiles.model(model)
            if stage == "aggregator" and placement == "tp" and cluster.n > 1:
                caps = [kv_capacity_tokens(prof, engine, memory, cluster.n)]
            else:
                caps = [kv_capacity_tokens(prof, engine, w.memory_gib) for w in cluster.workers]
            fitting = [c for c in caps if c >= engine.max_model_len]
            cache[(model, stage)] = sequence_limit(min(fitting), engine) if fitting else None
        return cache[(model, stage)]
    return limit


def expert_models(workload: Workload) -> list[str]:
    """The models the workload's expert stage sends requests to, by name."""
    return sorted({m for q in workload.queries for m, _ in expert_slots(q.experts)})


def check_block_override(workload: Workload, profiles: ProfileSet, cluster: Cluster, placement: str) -> None:
    """engine.num_gpu_blocks sets the KV cache outright (vLLM: num_gpu_blocks_override), so it must
    not promise more than the GPU holds after the weights: vLLM would run out of memory allocating
    it, and the simulator would serve on memory that does not exist."""
    engine = profiles.engine
    if engine.num_gpu_blocks is None:
        return
    natural = replace(engine, num_gpu_blocks=None)
    stages = [(m, "expert") for m in expert_models(workload)]
    stages.append((workload.aggregator, "aggregator"))
    for model, stage in stages:
        prof = profiles.model(model)
        tp = cluster.n if stage == "aggregator" and placement == "tp" and cluster.n > 1 else 1
        most = max(kv_capacity_tokens(prof, natural, w.memory_gib, tp) for w in cluster.workers) // engine.block_size
        if engine.num_gpu_blocks > most:
            raise ConfigError(
                f"engine.num_gpu_blocks={engine.num_gpu_blocks} is more KV cache than model {model} can have "
                f"({most} blocks of {engine.block_size} tokens{f' over {tp} GPUs' if tp > 1 else ''} at "
                f"cluster.memory_gib={max(w.memory_gib for w in cluster.workers)}, gpu_memory_utilization "
                f"{engine.gpu_memory_utilization}, after its weights): set it to at most {most}, or null for "
                "what the memory holds")


def _why_oversize(prompt: int, output: int, limit: int, engine: EngineProfile, cluster: Cluster) -> str | None:
    context = engine.max_model_len
    if prompt >= context:
        return f"prompt {prompt} tokens >= max_model_len {context}"
    if prompt + output > context:
        return f"prompt {prompt} + output {output} tokens > max_model_len {context}"
    if prompt + output > limit:
        cache = (f"engine.num_gpu_blocks={engine.num_gpu_blocks}" if engine.num_gpu_blocks is not None
                 else f"cluster.memory_gib={min(w.memory_gib for w in cluster.workers)}")
        return f"prompt {prompt} + output {output} tokens > the {limit} its KV cache holds for one sequence at {cache}"
    return None


def _cut_text(text: str | None, old_prompt: int, new_prompt: int) -> str | None:
    """The question text cut to a prompt of `new_prompt` tokens (the template's tokens kept): its
    last tokens, as vLLM's truncate_prompt_tokens keeps them."""
    if text is None:
        return None
    template = max(0, old_prompt - estimate_tokens(text))
    chars = int(max(1, new_prompt - template) * CHARS_PER_TOKEN)
    return text[-chars:] if len(text) > chars else text


def admit_requests(workload: Workload, cluster: Cluster, profiles: ProfileSet, placement: str = "tp",
                   oversize: str = "reject") -> tuple[Workload, tuple[str, ...]]:
    """Every request checked, before any stage runs, against what the engine can serve: its prompt
    below the context window (engine.max_model_len), prompt + output within it, and within the KV
    cache one sequence can have on the smallest GPU the model may run on (the aggregator's TP
    engine: the combined cache). Output: the workload's replayed length (none known: one token).
    The aggregator's prompt is built after the expert stage and capped at engine.aggregator_cap (half
    the context), so its output must fit the other half.

    oversize "reject": a one-line ConfigError with how many requests and the first few ids, naming
    the setting. "truncate": each such query's prompt is cut to fit (its last tokens kept, the text
    with it), then each output to the room left; returns the workload to run and the ids of the
    requests it changed (summary.json admission.truncated_requests). Nothing oversize: the same workload, ()."""
    check_choice("workload.oversize", oversize, OVERSIZE_POLICIES)
    check_block_override(workload, profiles, cluster, placement)
    engine, outcomes = profiles.engine, workload.outcomes
    limit = _limits(profiles, cluster, placement)
    # A model that fits no worker: its stage's planner would refuse it, after the stages before it
    # ran (a sweep's job failing in its expert stage); the same one line here, before any stage.
    # Named: the one that needs the most memory (raising memory_gib for it fits the others too).
    unfit = sorted((m for m in expert_models(workload) if limit(m, "expert") is None), key=lambda m: -_need_bytes(profiles, m))
    if unfit:
        refuse_unfitting(unfit[0], profiles.model(unfit[0]), engine, cluster, unfit[1:])
    if limit(workload.aggregator, "aggregator") is None:
        if placement == "tp" and cluster.n > 1:
            refuse_unfitting_tp(workload.aggregator, engine, min(w.memory_gib for w in cluster.workers), cluster.n)
        refuse_unfitting(workload.aggregator, profiles.model(workload.aggregator), engine, cluster)
    half = engine.aggregator_cap
    bad: dict[str, str] = {}
    total = 0
    for q in workload.queries:
        for m, s in expert_slots(q.experts):
            total += 1
            rid, lim = expert_request_id(q.id, m, s), limit(m, "expert")
            out = outcomes.get(rid)
            why = None if lim is None else _why_oversize(q.prompt_tokens, max(1, out.output_tokens) if out else 1,
                                                          lim, engine, cluster)
            if why:
                bad[rid] = why
        total += 1
        rid, lim = aggregator_request_id(q.id), limit(workload.aggregator, "aggregator")
        out = outcomes.get(rid)
        if lim is not None and out is not None and out.output_tokens > min(half, lim - half):
            bad[rid] = (f"aggregator output {out.output_tokens} tokens > {min(half, lim - half)}, the room its prompt "
                        f"(up to engine.max_model_len // 2 = {half}) leaves")
    if not bad:
        return workload, ()
    if oversize == "reject":
        eg = "; ".join(f"{rid} ({why})" for rid, why in list(bad.items())[:3])
        raise ConfigError(f"workload: {len(bad)} of {total} requests cannot be served as asked by the profile's engine "
                          f"(engine.max_model_len={engine.max_model_len}), e.g. {eg}; set workload.oversize=truncate "
                          "to cut them to fit (counted in summary.json admission.truncated_requests), shorten those prompts, "
                          + ("or raise engine.num_gpu_blocks" if engine.num_gpu_blocks is not None
                             else "or use profiles with a longer max_model_len"))
    queries, new_outcomes, truncated = [], dict(outcomes), []
    for q in workload.queries:
        slots = [(expert_request_id(q.id, m, s), limit(m, "expert")) for m, s in expert_slots(q.experts)]
        agg = aggregator_request_id(q.id)
        if not any(rid in bad for rid, _ in slots) and agg not in bad:
            queries.append(q)
            continue
        known = [lim for _, lim in slots if lim is not None]
        prompt = min(q.prompt_tokens, min(known) - 1) if known else q.prompt_tokens
        for rid, lim in slots:
            if lim is None or (rid not in bad and prompt == q.prompt_tokens):
                continue
            if rid in new_outcomes:
                out = new_outcomes[rid]
                new_outcomes[rid] = replace(out, output_tokens=max(1, min(out.output_tokens, lim - prompt)))
            truncated.append(rid)
        if agg in bad:
            out, lim = new_outcomes[agg], limit(workload.aggregator, "aggregator")
            new_outcomes[agg] = replace(out, output_tokens=max(1, min(out.output_tokens, half, lim - half)))
            truncated.append(agg)
        queries.append(q if prompt == q.prompt_tokens else
                       replace(q, prompt_tokens=prompt, text=_cut_text(q.text, q.prompt_tokens, prompt)))
    return replace(workload, queries=tuple(queries), outcomes=new_outcomes), tuple(truncated)
