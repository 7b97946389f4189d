"""An online run's serving metrics, with the names and units of vLLM's benchmark where they apply
(`vllm bench serve`): request and output-token throughput, TTFT / TPOT / E2E percentiles per stage
(from each request's release to its engine: queueing included), per query (arrival to final answer),
SLO attainment and goodput.

A query meets its SLO when it is answered within slo.latency_s of its arrival, or, with that null,
within slo.multiple times its unloaded latency: its own served requests alone on idle engines
(CostModel.alone_s: one prefill step, a decode step per further token), along its graph's longest
chain (the MoA pipeline: its slowest expert, then its aggregator where it ran). A rejected query
(arrivals.max_in_system) or one left without an answer misses it. The span is from the first
arrival to the last answer; throughput, goodput and token rates are per second of it. Inter-token
latency is not reported: the simulator does not keep each token's time (TPOT is its mean per request).
"""
from __future__ import annotations

from typing import Any, Callable

from mosaic.config.schema import SloConfig
from mosaic.engine.session import cost_model
from mosaic.graphs.shape import ROOT, AgentSpec
from mosaic.graphs.trace import FAILED, SERVED, GraphTrace
from mosaic.profiles import ProfileSet
from mosaic.run.serving import distribution


def unloaded_latency(shape: tuple[AgentSpec, ...], served: dict[str, Any], profiles: ProfileSet) -> float:
    """Seconds from arrival to answer of one query on idle engines (see the module)."""
    done: dict[str, float] = {}
    for a in shape:   # precursors first (graph_shape's and moa_shape's order)
        start = max((done[r] for r in a.reads), default=0.0)
        r = served.get(a.name)
        if r is None:   # cancelled, skipped or failed: it added no time
            done[a.name] = start
            continue
        alone = cost_model(profiles.model(a.model), profiles.engine).alone_s(r.prompt_tokens, r.output_tokens)[1]
        done[a.name] = start + alone
    return max(done.values(), default=0.0)


def stage_metrics(records: list, span: float) -> dict[str, Any]:
    ttft = [r.first_token_s - r.release_s for r in records if r.first_token_s is not None]
    tpot = [(r.finish_s - r.first_token_s) / (r.output_tokens - 1) for r in records if r.output_tokens > 1]
    tokens = sum(r.output_tokens for r in records)
    return {"requests": len(records),
            "queue_s": distribution([r.start_s - r.release_s for r in records if r.start_s is not None]),
            "ttft_s": distribution(ttft), "tpot_s": distribution(tpot),
            "e2e_s": distribution([r.finish_s - r.release_s for r in records]),
            "output_tokens": tokens, "output_tokens_per_s": tokens / span if span > 0 else None}


def online_metrics(trace: GraphTrace, shape_of: Callable[[str], tuple[AgentSpec, ...]], profiles: ProfileSet,
                   slo: SloConfig) -> dict[str, Any]:
    served: dict[str, dict[str, Any]] = {}
    for r in trace.requests:
        if r.status == SERVED:
            served.setdefault(r.query_id, {})[r.agent] = r
    qs = trace.queries
    first = min((q.start_s for q in qs), default=0.0)
    failed_root = {r.query_id for r in trace.requests if r.agent == ROOT and r.status == FAILED}
    answered = [q for q in qs if not q.rejected and q.query_id not in failed_root]
    last = max((q.finish_s for q in answered), default=first)
    span = last - first
    met, e2e, slack = 0, [], []
    for q in answered:
        e2e.append(q.latency_s)
        target = slo.latency_s if slo.latency_s is not None else \
            slo.multiple * unloaded_latency(shape_of(q.query_id), served.get(q.query_id, {}), profiles)
        slack.append(float(q.latency_s / target) if target > 0 else float("inf"))
        met += bool(q.latency_s <= target + 1e-9)
    records = [r for qr in served.values() for r in qr.values()]
    n = len(qs)
    return {
        "queries": n, "rejected": sum(q.rejected for q in qs), "answered": len(answered),
        "span_s": span,
        "request_throughput_qps": len(answered) / span if span > 0 else None,
        "goodput_qps": met / span if span > 0 else None,
        "slo": {"latency_s": slo.latency_s, "multiple": None if slo.latency_s is not None else slo.multiple},
        "slo_attainment": met / n if n else None,
        # a query's latency over its own target: <= 1 met it
        "slo_ratio": distribution(slack),
        "query_e2e_s": distribution(e2e),
        "output_tokens_per_s": sum(r.output_tokens for r in records) / span if span > 0 else None,
        "expert": stage_metrics([r for r in records if r.agent != ROOT], span),
        "aggregator": stage_metrics([r for r in records if r.agent == ROOT], span),
    }
