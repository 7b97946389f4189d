"""Faster-MoA's four settings on its own agents (Qwen3-VL-4B/8B/32B on H200, profiles
mosaic/profiles/data/faster_moa_h200.yaml), simulated: all-to-all 9-9-1, tree 9-3-1, tree +
dependency-aware prefill overlap, tree + overlap + Q-metric early exit; at concurrency 1
(per-query latency) and 32 queries in flight; with MOSAIC's placement (scheduler=ilp over the
graph's whole demand), the simple load-aware rule and models placed in turn. Every run goes through the run builder
with the Hydra config experiments/run.py uses (mosaic/conf/), only with overrides.
`python experiments/faster_moa.py` runs `write`.

Latency reductions are per-query latency (mean, p50) against all-to-all at the same concurrency
and placement. Faster-MoA's headline reductions against all-to-all (the best over its settings):
-62% tree, -76% tree + overlap, -90% all three; accuracy within +-1 point.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from mosaic.core.tables import write_csv
from mosaic.run.app import run
from mosaic.run.builder import compose
from mosaic.core.rundir import check_writable_dir, write_atomic, write_text_atomic

TREE = ["topology=faster_moa_tree"]
SETTINGS: tuple[tuple[str, list[str]], ...] = (
    ("all-to-all", ["topology=faster_moa_a2a"]),
    ("tree", TREE),
    ("tree + overlap", [*TREE, "topology.overlap=incremental"]),
    ("tree + overlap + early exit", [*TREE, "topology.overlap=incremental", "topology.early_exit=qmetric"]),
)
PAPER_REDUCTION_PCT = {"tree": -62.0, "tree + overlap": -76.0, "tree + overlap + early exit": -90.0}
CONCURRENCY = (1, 32)
# MOSAIC's ILP over the graph's whole demand (one model per worker), the simple load-aware rule
# (workers by expected output tokens), and models in turn.
PLACEMENTS = ("scheduler", "demand", "even")
PLACEMENT_LABELS = {"scheduler": "MOSAIC placement (the ILP over the graph's demand)",
                    "demand": "load-aware placement (workers by expected output tokens)",
                    "even": "models placed in turn"}
BASE = ["workload=synth_mmlu_pro", "cluster=h200x8"]
COMMAND = "python experiments/faster_moa.py"


def measure(n_queries: int = 64, seed: int = 0) -> list[dict[str, Any]]:
    rows = []
    for placement in PLACEMENTS:
        for conc in CONCURRENCY:
            for name, overrides in SETTINGS:
                t0 = time.perf_counter()
                s = run(compose([*BASE, *overrides, f"workload.n_queries={n_queries}", f"seed={seed}",
                                 f"topology.concurrency={conc}", f"topology.placement={placement}",
                                 *(["scheduler=ilp"] if placement == "scheduler" else [])])).summary
                lat = s["query_latency_s"]
                large = s["invocations"].get("Qwen3VL32B", {"served": 0, "cancelled": 0})
                rows.append({"setting": name, "concurrency": conc, "placement": placement, "seed": seed,
                             "n_queries": s["n_queries"], "latency_mean_s": lat["mean"], "latency_p50_s": lat["p50"],
                             "latency_p90_s": lat["p90"], "makespan_after_load_s": s["makespan_s"] - s["ready_s"],
                             "accuracy": s["accuracy"], "served": s["n_served_requests"],
                             "cancelled": s["n_cancelled_requests"], "large_model_served": large["served"],
                             "prefix_cache_hit_rate": s["prefix_cache_hit_rate"],
                             "workers": "/".join(f"{m}x{list(s['placement'].values()).count(m)}"
                                                 for m in dict.fromkeys(s["placement"].values())),
                             "wall_s": time.perf_counter() - t0})
                print(f"{placement:6s} c={conc:<2d} {name:28s} p50 {lat['p50']:7.2f} s  mean {lat['mean']:7.2f} s",
                      file=sys.stderr, flush=True)
    base = {(r["placement"], r["concurrency"]): r for r in rows if r["setting"] == "all-to-all"}
    for r in rows:
        b = base[(r["placement"], r["concurrency"])]
        r["p50_vs_a2a_pct"] = 100 * (r["latency_p50_s"] / b["latency_p50_s"] - 1)
        r["mean_vs_a2a_pct"] = 100 * (r["latency_mean_s"] / b["latency_mean_s"] - 1)
        r["accuracy_vs_a2a_pp"] = 100 * (r["accuracy"] - b["accuracy"])
        r["paper_vs_a2a_pct"] = PAPER_REDUCTION_PCT.get(r["setting"])
    return rows


def render(rows: list[dict[str, Any]], n_queries: int, seed: int, command: str = COMMAND) -> str:
    out = ["# Faster-MoA's settings, simulated on its own agents", "",
           f"Regenerate: `{command}` ({n_queries} synthetic MMLU-Pro queries, seed {seed}, 8 simulated H200; "
           "logic: mosaic/analysis/faster_moa.py). Agents: Qwen3-VL-4B/8B/32B-Instruct "
           "(mosaic/profiles/data/faster_moa_h200.yaml: sizes from the published configs; the engine cost model's "
           "kernel terms timed on one H200 (faster_moa_h200.kernels.json, experiments/measure_gpu_kernels.py); "
           "per-step host overheads, load times, output lengths and accuracies assumed). "
           "Per-query latency from a query's start to its aggregator's last token, engines already loaded. "
           "Reductions against all-to-all at the same concurrency and placement; Faster-MoA's are its headline "
           "figures (the best over its settings).", ""]
    for placement in PLACEMENTS:
        out += [f"## {PLACEMENT_LABELS[placement]}", "", "| setting | concurrency | latency p50 / p90 (s) | mean (s) | p50 vs all-to-all "
                "| mean vs all-to-all | Faster-MoA | accuracy (vs a2a) | 32B requests | cancelled | cache hit | workers |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in (r for r in rows if r["placement"] == placement):
            paper = "–" if r["paper_vs_a2a_pct"] is None else f"{r['paper_vs_a2a_pct']:+.0f}%"
            hit = "–" if not r["prefix_cache_hit_rate"] else f"{100 * r['prefix_cache_hit_rate']:.0f}%"
            out.append(f"| {r['setting']} | {r['concurrency']} | {r['latency_p50_s']:.1f} / {r['latency_p90_s']:.1f} | "
                       f"{r['latency_mean_s']:.1f} | {r['p50_vs_a2a_pct']:+.0f}% | {r['mean_vs_a2a_pct']:+.0f}% | {paper} | "
                       f"{100 * r['accuracy']:.1f}% ({r['accuracy_vs_a2a_pp']:+.1f} pp) | {r['large_model_served']} | "
                       f"{r['cancelled']} | {hit} | {r['workers']} |")
        out.append("")
    return "\n".join(out) + "\n"


def figure(rows: list[dict[str, Any]], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3.2))
    axes = fig.subplots(1, len(CONCURRENCY))
    names = [n for n, _ in SETTINGS]
    for ax, conc in zip(axes, CONCURRENCY):
        for i, placement in enumerate(PLACEMENTS):
            mine = {r["setting"]: r for r in rows if r["concurrency"] == conc and r["placement"] == placement}
            x = [j + (i - 1) * 0.27 for j in range(len(names))]
            ax.bar(x, [mine[n]["latency_p50_s"] for n in names], 0.25,
                   yerr=[[0] * len(names), [mine[n]["latency_p90_s"] - mine[n]["latency_p50_s"] for n in names]],
                   label={"scheduler": "MOSAIC (ILP)", "demand": "by expected tokens", "even": "in turn"}[placement],
                   capsize=2)
        ax.set_xticks(range(len(names)), ["a2a", "tree", "tree+ov", "tree+ov+exit"], fontsize=8)
        ax.set_title(f"concurrency {conc}", fontsize=9)
        ax.set_ylabel("per-query latency p50 (bar) to p90 (s)", fontsize=8)
    axes[0].legend(fontsize=7, frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def write(out: Path, n_queries: int = 64, seed: int = 0, command: str = COMMAND) -> str:
    check_writable_dir(Path(out), "--out")
    rows = measure(n_queries, seed)
    table = render(rows, n_queries, seed, command)
    write_atomic(Path(out) / "faster_moa.csv", lambda f: write_csv(f, [{k: v for k, v in r.items() if k != "wall_s"}
                                                                      for r in rows]))
    write_text_atomic(Path(out) / "faster_moa.md", table)
    figure(rows, Path(out) / "figures" / "faster_moa_latency.png")
    return table
