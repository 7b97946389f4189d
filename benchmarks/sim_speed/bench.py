"""How fast the simulator runs: per case (the flat MoA pipeline, the dense and tree agent graphs at
concurrency 1 and 32, at 4 / 64 / 256 workers), wall seconds of building, planning and simulating,
simulated requests per wall second of simulation, peak resident memory, and where the time goes by
component (cProfile's own time summed per package). Each case runs in its own process, one after
the other, so peak memory is the case's own and no two share the cores.

Planning is timed apart from simulating: at 64 and 256 workers the flat cases plan with
least_loaded, whose planning is negligible, so what is measured is the simulator; the default
policy (engine_aware) simulates sessions to plan, which the N=4 case shows.
"""
from __future__ import annotations

import cProfile
import json
import os
import pstats
import resource
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

# name -> (Hydra overrides, workers). Queries scale with workers (525 a worker, the default's share).
CASES: dict[str, list[str]] = {
    "flat-N4": [],
    "flat-N64": ["cluster.n_workers=64", "workload.n_queries=33600", "scheduler=least_loaded"],
    "flat-N256": ["cluster.n_workers=256", "workload.n_queries=134400", "scheduler=least_loaded"],
    "dense-c1-N4": ["topology=dense", "topology.concurrency=1", "workload.n_queries=300"],
    "dense-c32-N4": ["topology=dense", "topology.concurrency=32"],
    "tree-c1-N4": ["topology=tree", "topology.concurrency=1", "workload.n_queries=300"],
    "tree-c32-N4": ["topology=tree", "topology.concurrency=32"],
    "dense-c32-N64": ["topology=dense", "topology.concurrency=32", "cluster.n_workers=64", "workload.n_queries=33600"],
    "tree-c32-N64": ["topology=tree", "topology.concurrency=32", "cluster.n_workers=64", "workload.n_queries=33600"],
    "flat-1M-N256": ["cluster.n_workers=256", "workload.n_queries=333334", "scheduler=least_loaded"],
    # online: queries arriving at 0.3/s, every model loaded on 8 workers (the V1 engine, KV-tight)
    "online-moa-N8": ["arrivals=poisson", "arrivals.rate=0.3", "cluster.n_workers=8", "workload.n_queries=300"],
    # the tests' cases: seconds
    "flat-smoke": ["workload=smoke"],
    "dense-smoke": ["topology=dense", "workload=smoke"],
}
MAIN = [c for c in CASES if "smoke" not in c]
QUICK = ("flat-N4", "dense-c32-N4", "tree-c1-N4")
COMPONENTS = ("mosaic.engine", "mosaic.backends.sim", "mosaic.graphs", "mosaic.costs", "mosaic.schedulers",
              "mosaic.workload", "mosaic.run", "simpy", "numpy", "pandas")


def component(filename: str) -> str:
    norm = filename.replace(os.sep, ".")
    for c in COMPONENTS:
        if f"{c}." in norm or norm.endswith(c):
            return c
    return "other" if "site-packages" in norm or "mosaic" in norm else "python"


def measure(name: str, profile: bool = True) -> dict:
    """Run one case in this process: its phases, rate, memory and per-component time."""
    from mosaic.backends.sim import backend as sim_backend
    from mosaic.backends.sim import graph_pool
    from mosaic.run import pipeline
    from mosaic.run.builder import build_run, compose

    spent = defaultdict(float)

    def timed(key, fn):
        def wrapper(*a, **kw):
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                spent[key] += time.perf_counter() - t0
        return wrapper

    pipeline.plan_stage = timed("plan", pipeline.plan_stage)
    sim_backend.SimBackend.run = timed("simulate", sim_backend.SimBackend.run)
    graph_pool.SimGraphPool.run = timed("simulate", graph_pool.SimGraphPool.run)
    t0 = time.perf_counter()
    run = build_run(compose(CASES[name]))
    built = time.perf_counter() - t0
    prof = cProfile.Profile() if profile else None
    t1 = time.perf_counter()
    if prof:
        prof.enable()
    if run.config.topology.kind == "flat" and not run.config.arrivals.online():
        res = run.execute()
        n = len(res.expert.trace.requests) + len(res.aggregator.trace.requests)
    else:
        from mosaic.run import graph_app
        trace, _, _ = graph_app.execute(run)
        n = len(trace.requests)
    if prof:
        prof.disable()
    wall = time.perf_counter() - t1
    by = defaultdict(float)
    if prof:
        for (file, _, _), (_, _, tottime, _, _) in pstats.Stats(prof).stats.items():
            by[component(file)] += tottime
    total = sum(by.values()) or 1.0
    return {"case": name, "requests": n, "build_s": built, "run_s": wall, "plan_s": spent["plan"],
            "simulate_s": spent["simulate"], "requests_per_s": n / spent["simulate"] if spent["simulate"] else None,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "profiled": profile, "components": {k: v / total for k, v in sorted(by.items(), key=lambda kv: -kv[1])}}


def run_cases(names, profile: bool = True, python: str = sys.executable, env: dict | None = None) -> list[dict]:
    """Each case in a fresh process (python -m benchmarks.sim_speed --case NAME)."""
    out = []
    root = Path(__file__).resolve().parents[2]
    for name in names:
        cmd = [python, "-m", "benchmarks.sim_speed", "--case", name] + ([] if profile else ["--no-profile"])
        got = subprocess.run(cmd, capture_output=True, text=True, cwd=root, env=env)
        if got.returncode != 0:
            out.append({"case": name, "error": (got.stderr.strip().splitlines() or ["failed"])[-1]})
        else:
            out.append(json.loads(got.stdout.strip().splitlines()[-1]))
        print(json.dumps(out[-1]), flush=True)
    return out


def render(rows: list[dict], before: dict[str, dict] | None, command: str) -> str:
    lines = ["# Simulator speed", "",
             f"Regenerate with `{command}` (each case in its own process, one after the other, on one core; "
             "timings without the profiler; the component shares from a second, profiled run). Logic: "
             "benchmarks/sim_speed/bench.py.", "",
             "| case | requests | plan (s) | simulate (s) | simulated requests / s | peak memory (MiB) |"
             + (" before: simulate (s) | before: requests / s | speed-up |" if before else ""),
             "|---|---|---|---|---|---|" + ("---|---|---|" if before else "")]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['case']} | failed: {r['error']} |")
            continue
        line = (f"| {r['case']} | {r['requests']} | {r['plan_s']:.1f} | {r['simulate_s']:.1f} | "
                f"{r['requests_per_s']:.0f} | {r['peak_rss_mib']:.0f} |")
        b = (before or {}).get(r["case"])
        if before:
            line += (f" {b['simulate_s']:.1f} | {b['requests_per_s']:.0f} | {b['simulate_s'] / r['simulate_s']:.1f}x |"
                     if b and "error" not in b else " - | - | - |")
        lines.append(line)
    prof = [r for r in rows if r.get("components")]
    if prof:
        lines += ["", "Where the time goes (share of profiled time, by package):", "",
                  "| case | " + " | ".join(COMPONENTS[:8]) + " | other |", "|---|" + "---|" * 9]
        for r in prof:
            c = r["components"]
            rest = 1 - sum(c.get(k, 0) for k in COMPONENTS[:8])
            lines.append(f"| {r['case']} | " + " | ".join(f"{100 * c.get(k, 0):.0f}%" for k in COMPONENTS[:8])
                         + f" | {100 * rest:.0f}% |")
    return "\n".join(lines) + "\n"
