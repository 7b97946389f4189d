"""Compare a simulated Trace with a real one for the same Plan: makespan and per-request errors."""
from __future__ import annotations

from typing import Any

import numpy as np

from mosaic.trace import Trace


def request_latencies(trace: Trace) -> dict[str, float]:
    """Per request, finish time minus the start of its session's serving (load excluded), which
    both backends define the same way whatever their queueing details."""
    run_start = {(s.worker, s.index): s.run_start_s for s in trace.sessions}
    return {r.request_id: r.finish_s - run_start[(r.worker, r.session)] for r in trace.requests if r.error is None}


def compare(sim: Trace, real: Trace) -> dict[str, Any]:
    if {r.request_id for r in sim.requests} != {r.request_id for r in real.requests}:
        raise ValueError("the two traces cover different requests: they must come from the same plan")
    ls, lr = request_latencies(sim), request_latencies(real)
    common = sorted(set(ls) & set(lr))
    rel = np.array([abs(ls[k] - lr[k]) / lr[k] for k in common if lr[k] > 0])
    absolute = np.array([abs(ls[k] - lr[k]) for k in common])
    pct = (lambda a, q: float(np.percentile(a, q)) if len(a) else float("nan"))
    serve_sim = max((s.run_end_s - s.run_start_s for s in sim.sessions), default=0.0)
    serve_real = max((s.run_end_s - s.run_start_s for s in real.sessions), default=0.0)
    load_sim = float(np.mean([s.load_end_s - s.load_start_s for s in sim.sessions])) if sim.sessions else 0.0
    load_real = float(np.mean([s.load_end_s - s.load_start_s for s in real.sessions])) if real.sessions else 0.0
    return {"stage": sim.stage, "requests": len(common), "failed_real": sum(r.error is not None for r in real.requests),
            "makespan_sim_s": sim.makespan_s, "makespan_real_s": real.makespan_s,
            "makespan_error": (sim.makespan_s - real.makespan_s) / real.makespan_s if real.makespan_s else 0.0,
            "longest_serving_sim_s": serve_sim, "longest_serving_real_s": serve_real,
            "mean_load_sim_s": load_sim, "mean_load_real_s": load_real,
            "latency_rel_error_p50": pct(rel, 50), "latency_rel_error_p90": pct(rel, 90),
            "latency_abs_error_p50_s": pct(absolute, 50), "latency_abs_error_p90_s": pct(absolute, 90)}
