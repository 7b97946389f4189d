"""Serving metrics of a run, as vLLM's benchmarks report them: TTFT, TPOT, end-to-end latency
(mean, p50, p90, p99) per stage, output tokens per second per GPU, and per query completion.

Time origin: a request is sent when its session starts running (after its model's load), the
moment a serving engine would receive it; so TTFT = first token - session start, latency = finish -
session start. A query completes when its final answer exists: after its last expert request if
the aggregator was skipped, else at the expert stage's end plus its aggregator request's finish
(the stages run one after the other, each timed from its own start). Failed requests are left
out of the latencies and counted.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from mosaic.trace import Trace

PERCENTILES = (50, 90, 99)


def distribution(values: list[float]) -> dict[str, float | None]:
    """mean and p50/p90/p99 of `values` (seconds); None where there are none."""
    if not values:
        return {"mean": None, **{f"p{p}": None for p in PERCENTILES}}
    a = np.asarray(values, dtype=float)
    return {"mean": float(a.mean()), **{f"p{p}": float(np.percentile(a, p)) for p in PERCENTILES}}


def percentiles_text(d: dict[str, float | None], scale: float = 1.0, unit: str = "s") -> str:
    """A distribution's p50 / p90 / p99 for the console, e.g. "1.2 / 3.4 / 5.6 s"."""
    return " / ".join("n/a" if d[k] is None else f"{scale * d[k]:.1f}" for k in ("p50", "p90", "p99")) + f" {unit}"


def stage_serving(trace: Trace, n_gpus: int) -> dict[str, Any]:
    """One stage's serving metrics (seconds; tokens/s)."""
    start = {(s.worker, s.index): s.run_start_s for s in trace.sessions}
    ok = [r for r in trace.requests if r.error is None]
    ttft, tpot, latency = [], [], []
    for r in ok:
        t0 = start.get((r.worker, r.session), 0.0)
        ttft.append(r.first_token_s - t0)
        latency.append(r.finish_s - t0)
        if r.output_tokens > 1:
            tpot.append((r.finish_s - r.first_token_s) / (r.output_tokens - 1))
    out_tokens = sum(r.output_tokens for r in ok)
    span = trace.makespan_s
    return {"requests": len(trace.requests), "failed": len(trace.requests) - len(ok),
            "ttft_s": distribution(ttft), "tpot_s": distribution(tpot), "latency_s": distribution(latency),
            "output_tokens": out_tokens,
            "output_tokens_per_s_per_gpu": out_tokens / span / n_gpus if span > 0 and n_gpus > 0 else None}


def query_completion(expert: Trace, aggregator: Trace, skipped: dict[str, bool]) -> dict[str, float | None]:
    """Per query, when its final answer exists (seconds from the run's start; see the module). A
    query has none where its aggregator request failed, or (skipped) every expert request did: it is
    left out, not counted as done when its requests failed."""
    last_expert: dict[str, float] = {}
    for r in expert.requests:
        if r.error is None:
            last_expert[r.query_id] = max(last_expert.get(r.query_id, 0.0), r.finish_s)
    agg = {r.query_id: r.finish_s for r in aggregator.requests if r.error is None}
    sent = {r.query_id for r in aggregator.requests}
    done = []
    for q, skip in skipped.items():
        if not skip and q in agg:
            done.append(expert.makespan_s + agg[q])
        elif (skip or q not in sent) and q in last_expert:
            done.append(last_expert[q])
    return distribution(done)
