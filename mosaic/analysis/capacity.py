"""The sustainable rate of online serving: per (placement, runtime) policy, the highest arrival rate
at which SLO attainment, averaged over seeds, stays at or above a target (default 0.99).

    mosaic capacity arrivals=poisson cluster.n_workers=8 workload.n_queries=200 --target 0.99

Each rate is one run per seed of the given config (arrivals.rate set). The search doubles the rate
from --start until attainment falls below the target, then bisects the bracket until it is within
--tolerance (relative). Attainment usually falls with rate but is measured, not assumed: every
rate tried is kept (capacity.csv) and drawn (capacity.png: attainment and query E2E p99 against rate).
"""
from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from mosaic.core.arguments import ArgumentParser, out_arg, rerun_command
from mosaic.core.rundir import write_atomic, write_text_atomic
from mosaic.core.tables import write_csv

DEFAULT_POLICIES = ("engine_aware/static", "engine_aware/pull", "engine_aware/least_outstanding", "engine_aware/p2c")


def measure(overrides: Sequence[str], rate: float, seed: int) -> dict[str, Any]:
    """One online run's attainment, goodput and E2E p99 at `rate`."""
    from mosaic.run.app import run
    from mosaic.run.builder import compose

    out = run(compose([*overrides, f"arrivals.rate={rate!r}", f"seed={seed}"]))
    o = out.summary["online"]
    starts = [q.start_s for q in out.graph[0].queries]
    return {"rate": rate, "seed": seed, "slo_attainment": o["slo_attainment"], "goodput_qps": o["goodput_qps"],
            "e2e_p99_s": o["query_e2e_s"]["p99"], "e2e_p50_s": o["query_e2e_s"]["p50"], "rejected": o["rejected"],
            "arrival_span_s": max(starts) - min(starts), "throughput_qps": o["request_throughput_qps"]}


def search(evaluate: Callable[[float], float], start: float, target: float, tolerance: float,
           burst: Callable[[float], bool] = lambda r: False) -> tuple[float | None, list[float], bool]:
    """The highest rate found with evaluate(rate) >= target (None: not even start / 64), every rate
    tried, and whether the search stopped unsaturated: doubling stops at a rate that passes while
    burst(rate) says its queries all came at once (a higher rate cannot queue them more). Doubling
    (or halving) to bracket it, then bisection to `tolerance`, as the module says."""
    tried: list[float] = []

    def ok(r: float) -> bool:
        tried.append(r)
        return evaluate(r) >= target

    if ok(start):
        lo, hi = start, start * 2
        if burst(lo):
            return lo, tried, True
        while ok(hi):
            lo, hi = hi, hi * 2
            if burst(lo):
                return lo, tried, True
    else:
        lo, hi = 0.0, start
        while hi > start / 64:
            if ok(hi / 2):
                lo = hi / 2
                break
            hi /= 2
        if lo == 0.0:
            return None, tried, False
    while (hi - lo) / lo > tolerance:
        mid = (lo + hi) / 2
        if ok(mid):
            lo = mid
        else:
            hi = mid
    return lo, tried, False


def capacity(base: Sequence[str], policies: Sequence[str], seeds: Sequence[int], target: float, start: float,
             tolerance: float, log=print) -> tuple[list[dict], list[dict]]:
    """(per-policy capacity rows, every run's row)."""
    points: list[dict] = []
    table = []
    for policy in policies:
        scheduler, _, runtime = policy.rpartition("/")
        ov = [*base, f"runtime={runtime}"] + ([f"scheduler={scheduler}"] if scheduler else [])

        def evaluate(rate: float) -> float:
            rows = [dict(measure(ov, rate, s), policy=policy) for s in seeds]
            points.extend(rows)
            mean = statistics.fmean(r["slo_attainment"] for r in rows)
            log(f"{policy:34s} rate {rate:8.4g}/s  attainment {mean:.3f}  E2E p99 "
                f"{statistics.fmean(r['e2e_p99_s'] for r in rows):8.1f} s")
            return mean

        def burst(rate: float) -> bool:   # every seed's queries arrived within its median query's latency
            rows = [x for x in points if x["policy"] == policy and x["rate"] == rate]
            return all(x["arrival_span_s"] <= x["e2e_p50_s"] for x in rows)

        best, tried, unsaturated = search(evaluate, start, target, tolerance, burst)
        table.append({"policy": policy, "capacity_qps": best, "unsaturated": unsaturated, "rates_tried": len(tried)})
    return table, points


def plot(points: list[dict], table: list[dict], target: float, path: Path) -> None:
    from matplotlib.figure import Figure   # no pyplot: a notebook's backend stays as it is

    fig = Figure(figsize=(11, 4))
    a, b = fig.subplots(1, 2)
    for row in table:
        p = row["policy"]
        by_rate: dict[float, list[dict]] = {}
        for x in points:
            if x["policy"] == p:
                by_rate.setdefault(x["rate"], []).append(x)
        rates = sorted(by_rate)
        a.plot(rates, [statistics.fmean(x["slo_attainment"] for x in by_rate[r]) for r in rates], "o-", label=p)
        b.plot(rates, [statistics.fmean(x["e2e_p99_s"] for x in by_rate[r]) for r in rates], "o-", label=p)
    a.axhline(target, color="grey", ls="--", lw=1)
    a.set(xscale="log", xlabel="arrival rate (queries/s)", ylabel="SLO attainment", title="SLO attainment")
    b.set(xscale="log", yscale="log", xlabel="arrival rate (queries/s)", ylabel="seconds", title="query E2E p99")
    a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def render(table: list[dict], base: Sequence[str], seeds: Sequence[int], target: float, command: str) -> str:
    lines = [f"# Sustainable rate at {100 * target:g}% SLO attainment", "",
             f"Regenerate: `{command}`", "",
             f"Config: `{' '.join(base) or '(defaults)'}`; seeds {', '.join(map(str, seeds))}.", "",
             "| policy (placement/runtime) | capacity (queries/s) | rates tried |", "|---|---:|---:|"]
    for r in table:
        cap = ("below the lowest rate tried" if r["capacity_qps"] is None else
               f">= {r['capacity_qps']:.4g} (never saturated: its queries all arrived within a query's latency "
               "and still met the SLO; add queries or tighten the SLO)" if r["unsaturated"] else f"{r['capacity_qps']:.4g}")
        lines.append(f"| {r['policy']} | {cap} | {r['rates_tried']} |")
    return "\n".join(lines) + "\n"


def main(args: list[str]) -> int:
    ap = ArgumentParser(prog="mosaic capacity", description=__doc__)
    ap.add_argument("overrides", nargs="*", help="config overrides of every run (arrivals=poisson etc.)")
    ap.add_argument("--policies", default=",".join(DEFAULT_POLICIES),
                    help="comma-separated scheduler/runtime pairs (the scheduler places the models)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--target", type=float, default=0.99, help="SLO attainment to sustain (default 0.99)")
    ap.add_argument("--start", type=float, default=0.1, help="first rate tried, queries/s")
    ap.add_argument("--tolerance", type=float, default=0.05, help="relative width the bisection stops at")
    ap.add_argument("--out", default="outputs/capacity", help="folder for capacity.md/.csv/.png")
    a = ap.parse_args(args)
    if not 0 < a.target <= 1 or a.start <= 0 or not 0 < a.tolerance < 1:
        ap.error("--target must be in (0, 1], --start > 0 and --tolerance in (0, 1)")
    base = list(a.overrides)
    if not any(o.startswith("arrivals=") for o in base):
        base.insert(0, "arrivals=poisson")
    if any(o.startswith(("arrivals.rate=", "runtime=", "seed=")) for o in base):
        ap.error("arrivals.rate, runtime and seed are what the search sets: leave them out of the overrides")
    out = out_arg(ap, Path(a.out))
    policies = [p for p in a.policies.split(",") if p]
    table, points = capacity(base, policies, a.seeds, a.target, a.start, a.tolerance,
                             log=lambda m: print(m, file=sys.stderr, flush=True))
    command = rerun_command("-m mosaic capacity", args)
    write_atomic(out / "capacity.csv", lambda f: write_csv(f, points))
    md = render(table, base, a.seeds, a.target, command)
    write_text_atomic(out / "capacity.md", md)
    plot(points, table, a.target, out / "capacity.png")
    print(md)
    return 0
