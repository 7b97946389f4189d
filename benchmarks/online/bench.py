"""Online serving benchmark: per workload, the sustainable rate of the least_outstanding router
(the reference: `mosaic capacity`'s search), then every policy at fractions of that rate, and
each policy's SLO attainment, query E2E p50/p99 and goodput there.

A policy is a runtime, with or without re-planning (runtime.replan); every policy places its models
with the same scheduler (engine_aware) on the same cluster. One run per (workload, policy, rate,
seed), each a fresh simulation of the same queries and arrivals (the seed decides both).
"""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Callable, Sequence

from mosaic.analysis.capacity import measure, search

# arrivals=azure_conv reads this file (relative to where the benchmark runs: the repository root).
AZURE = Path("../shared/data/arrivals/azure_llm_2023_conv.csv")

# name -> (overrides of every run, what it is). SLO: 3x each query's unloaded latency.
WORKLOADS: dict[str, tuple[list[str], str]] = {
    "moa": (["workload=synth_mmlu_pro", "workload.n_queries=600", "cluster.n_workers=6", "arrivals=poisson",
             "slo.multiple=3"], "the synthetic MMLU-Pro MoA mix, Poisson arrivals, 6 A100 workers"),
    "tree": (["workload=synth_mmlu_pro", "workload.n_queries=600", "cluster.n_workers=6", "topology=tree",
              "arrivals=poisson", "slo.multiple=3"], "the 9-3-1 tree agent graph, Poisson arrivals, 6 A100 workers"),
    "azure": (["workload=synth_mmlu_pro", "workload.n_queries=600", "cluster.n_workers=6", "arrivals=azure_conv",
               "slo.multiple=3"],
              "MoA queries at the Azure LLM conversation trace's timestamps (rescaled), 6 A100 workers"),
    # Two cases beside the three: engines whose KV cache, not their batch, binds (where late
    # binding can hold a request for the replica that admits it first), and a placement wrong from
    # the start (where re-planning can move replicas).
    "moa-kv": (["workload=synth_mmlu_pro", "workload.n_queries=600", "cluster.n_workers=6", "arrivals=poisson",
                "slo.multiple=3", "engine.num_gpu_blocks=2048"],
               "the MoA mix on engines with a 32k-token KV cache each (engine.num_gpu_blocks=2048)"),
    "tree-even": (["workload=synth_mmlu_pro", "workload.n_queries=600", "cluster.n_workers=8", "topology=tree",
                   "topology.placement=even", "arrivals=poisson", "slo.multiple=3"],
                  "the tree on 8 workers placed evenly (not by demand), Poisson arrivals"),
}
MAIN = ("moa", "tree", "azure")
REFERENCE = "least_outstanding"
POLICIES = ("static", "least_outstanding", "p2c", "pull", "least_outstanding+replan", "pull+replan")
FACTORS = (0.5, 0.8, 1.0, 1.5)


def policy_overrides(policy: str) -> list[str]:
    runtime, _, replan = policy.partition("+")
    return [f"runtime={runtime}"] + (["runtime.replan=true"] if replan else [])


def run_workload(name: str, seeds: Sequence[int], target: float, log: Callable[[str], None]) -> dict:
    base, what = WORKLOADS[name]
    ref = [*base, *policy_overrides(REFERENCE)]

    def attainment(rate: float) -> float:
        rows = [measure(ref, rate, s) for s in seeds]
        a = statistics.fmean(r["slo_attainment"] for r in rows)
        log(f"{name}: capacity search, {REFERENCE} at {rate:.4g}/s: attainment {a:.3f}")
        return a

    capacity, tried, unsaturated = search(attainment, 0.05, target, 0.1)
    # What the cluster serves flat out (every query at once, the reference router): no policy's
    # sustainable rate can pass it with this placement.
    peak = measure(ref, 1000.0, seeds[0])["throughput_qps"]
    rows = []
    if capacity is not None:
        for policy in POLICIES:
            for f in FACTORS:
                for s in seeds:
                    r = measure([*base, *policy_overrides(policy)], f * capacity, s)
                    rows.append(dict(r, workload=name, policy=policy, factor=f))
                    log(f"{name}: {policy:26s} x{f:<4g} attainment {r['slo_attainment']:.3f} "
                        f"E2E p99 {r['e2e_p99_s']:.0f} s")
    return {"workload": name, "what": what, "overrides": base, "capacity_qps": capacity, "peak_qps": peak,
            "unsaturated": unsaturated, "search_runs": len(tried) * len(seeds), "rows": rows}


def summarise(result: dict, target: float) -> list[dict]:
    """Per policy: the highest factor of the grid it sustains (attainment >= target at it and every
    lower factor), and its p99 and attainment at 0.8."""
    out = []
    for policy in POLICIES:
        mine = [r for r in result["rows"] if r["policy"] == policy]
        by_f = {f: [r for r in mine if r["factor"] == f] for f in FACTORS}
        att = {f: statistics.fmean(r["slo_attainment"] for r in by_f[f]) for f in FACTORS if by_f[f]}
        sustained = 0.0
        for f in FACTORS:
            if att.get(f, 0.0) < target:
                break
            sustained = f
        p99 = {f: statistics.fmean(r["e2e_p99_s"] for r in by_f[f]) for f in FACTORS if by_f[f]}
        out.append({"workload": result["workload"], "policy": policy, "sustained_factor": sustained,
                    **{f"attainment_x{f:g}": att.get(f) for f in FACTORS},
                    **{f"e2e_p99_s_x{f:g}": p99.get(f) for f in FACTORS}})
    return out


def render(results: list[dict], seeds: Sequence[int], target: float, command: str) -> str:
    lines = ["# Online serving: SLO attainment and latency by policy", "",
             f"Regenerate: `{command}` (single-threaded simulation).", "",
             f"Each workload's reference capacity is the highest Poisson (or trace-rescaled) rate at which "
             f"`runtime={REFERENCE}` keeps the mean SLO attainment over seeds {', '.join(map(str, seeds))} at or "
             f"above {target:g} (`mosaic capacity`'s search, to 10%). Every policy then runs at "
             f"{', '.join(f'{f:g}' for f in FACTORS)} times that rate. A query's SLO is 3x its unloaded latency "
             "(docs/online.md). Placement: engine_aware, one model per worker; `+replan` = runtime.replan=true.", ""]
    for res in results:
        lines += [f"## {res['workload']}: {res['what']}", "", f"Overrides: `{' '.join(res['overrides'])}`", ""]
        if res.get("skipped"):
            lines += [f"Not run: {res['skipped']}", ""]
            continue
        if res["capacity_qps"] is None:
            lines += ["The reference policy met the SLO at no rate tried.", ""]
            continue
        cap = f"{res['capacity_qps']:.4g} queries/s"
        if res["unsaturated"]:
            cap += " (never saturated: the run's queries all arrived within a query's latency)"
        lines += [f"Reference capacity ({REFERENCE}): {cap}. Served flat out (every query at once, the "
                  f"reference router): {res['peak_qps']:.3g} queries/s answered over the time to answer them all; "
                  f"the reference capacity is {res['capacity_qps'] / res['peak_qps']:.0%} of that.", "",
                  "| policy | sustained (x capacity) | " + " | ".join(f"attainment x{f:g}" for f in FACTORS)
                  + " | " + " | ".join(f"E2E p99 x{f:g} (s)" for f in FACTORS) + " |",
                  "|---|---:|" + "---:|" * (2 * len(FACTORS))]
        for s in summarise(res, target):
            def fmt(v, spec):
                return "–" if v is None else format(v, spec)
            lines.append(f"| {s['policy']} | {s['sustained_factor']:g} | "
                         + " | ".join(fmt(s[f'attainment_x{f:g}'], '.3f') for f in FACTORS) + " | "
                         + " | ".join(fmt(s[f'e2e_p99_s_x{f:g}'], '.0f') for f in FACTORS) + " |")
        lines.append("")
    return "\n".join(lines)


HOUR = ["arrivals=azure_conv", "workload.n_queries=19366", "cluster.n_workers=16"]


def hour_run(tmp: Path) -> dict:
    """One simulated hour of the Azure conversation trace at its recorded rate (all its 19,366
    arrivals, MoA queries with 3 experts, 16 workers), as `mosaic run` runs it, in a process of its
    own: its wall time and peak memory."""
    import json
    import resource
    import subprocess
    import sys
    import time

    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "mosaic", "run", *HOUR, f"hydra.run.dir={tmp}"],
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"the hour run failed: {done.stderr.strip().splitlines()[-1:]}")
    s = json.loads((tmp / "summary.json").read_text())
    return {"wall_s": wall, "peak_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
            "queries": s["n_queries"], "span_s": s["online"]["span_s"],
            "throughput_qps": s["online"]["request_throughput_qps"], "slo_attainment": s["online"]["slo_attainment"]}


def render_hour(h: dict | None) -> str:
    if h is None:
        return ""
    return (f"## One hour of the Azure trace, as recorded\n\n`mosaic run {' '.join(HOUR)}`: {h['queries']} queries "
            f"arriving over one hour, simulated in {h['wall_s']:.0f} s of wall time at a peak of "
            f"{h['peak_rss_mib']:.0f} MiB (one process). At the recorded rate the cluster is far past capacity: "
            f"it answers {h['throughput_qps']:.2f} queries/s, {h['slo_attainment']:.1%} of them within the SLO.\n")


def plot(results: list[dict], path: Path) -> None:
    from matplotlib.figure import Figure   # no pyplot: a notebook's backend stays as it is

    done = [r for r in results if r.get("rows")]
    if not done:
        return
    fig = Figure(figsize=(4.5 * len(done), 7))
    axes = fig.subplots(2, len(done), squeeze=False)
    for j, res in enumerate(done):
        for policy in POLICIES:
            rows = [r for r in res["rows"] if r["policy"] == policy]
            fs = [f for f in FACTORS if any(r["factor"] == f for r in rows)]
            att = [statistics.fmean(r["slo_attainment"] for r in rows if r["factor"] == f) for f in fs]
            p99 = [statistics.fmean(r["e2e_p99_s"] for r in rows if r["factor"] == f) for f in fs]
            axes[0][j].plot(fs, att, "o-", label=policy)
            axes[1][j].plot(fs, p99, "o-", label=policy)
        axes[0][j].set(title=res["workload"], xlabel="rate / reference capacity", ylabel="SLO attainment")
        axes[1][j].set(xlabel="rate / reference capacity", ylabel="query E2E p99 (s)", yscale="log")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
