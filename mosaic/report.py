"""Collect a sweep's run directories into the paper's result table and the data behind the figures.

Definitions (also in results/README.md):
- MOSAIC = scheduler ilp with adaptive aggregation tau=1; baseline = round_robin that always runs
  the aggregator (the Symbolic-MoE pipeline the paper accelerates). Speedup = baseline time /
  MOSAIC time for the same workload and seed, per stage and end to end.
- Accuracy change = accuracy with tau minus accuracy when always aggregating, in points (the
  scheduler never changes answers, so any scheduler's runs give it).
- Skip = share of queries whose aggregator call was skipped, in %.
Each metric is computed per seed, then mean and sample std over seeds.
"""
from __future__ import annotations

import csv
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

# The paper's table (DESIGN.md), MOSAIC vs round-robin.
PAPER: dict[str, dict[str, float]] = {
    "mmlu_pro": {"expert_speedup": 1.69, "aggregator_speedup": 1.74, "e2e_speedup": 1.71,
                 "acc_delta_tau1": 0.24, "acc_delta_tau067": -0.62, "skip_tau1": 45.71, "skip_tau067": 84.62},
    "medmcqa": {"expert_speedup": 1.53, "aggregator_speedup": 4.23, "e2e_speedup": 2.04,
                "acc_delta_tau1": -0.04, "acc_delta_tau067": 0.32, "skip_tau1": 47.48, "skip_tau067": 90.18},
    "gpqa": {"expert_speedup": 2.54, "aggregator_speedup": 1.53, "e2e_speedup": 2.34,
             "acc_delta_tau1": 1.00, "acc_delta_tau067": 0.49, "skip_tau1": 37.37, "skip_tau067": 87.37},
}
METRICS = tuple(PAPER["mmlu_pro"])
COLUMNS = ("dataset", "workload", "metric", "simulated", "simulated_std", "paper", "rel_diff", "n_seeds")


def dataset_of(workload: str) -> str | None:
    for prefix in ("trace_", "synth_", ""):
        if workload.startswith(prefix) and workload[len(prefix):] in PAPER:
            return workload[len(prefix):]
    return None


def load_runs(sweep_dir: Path) -> list[dict[str, Any]]:
    runs = []
    for path in sorted(Path(sweep_dir).rglob("summary.json")):
        s = json.loads(path.read_text())
        s["_dir"] = str(path.parent)
        runs.append(s)
    if not runs:
        raise FileNotFoundError(f"no summary.json under {sweep_dir}: run the sweep first")
    return runs


def _index(runs: Iterable[dict[str, Any]]) -> dict[tuple, dict[str, Any]]:
    return {(r["workload"], r["scheduler"], (r.get("aggregation") or {}).get("name"), r["seed"]): r for r in runs}


def per_seed_metrics(runs: list[dict[str, Any]]) -> dict[str, dict[str, list[float]]]:
    """workload -> metric -> one value per seed that has every run the metric needs."""
    idx = _index(runs)
    out: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for wl, seed in sorted({(r["workload"], r["seed"]) for r in runs}):
        base = idx.get((wl, "round_robin", "always", seed))
        ours = idx.get((wl, "ilp", "tau1", seed))
        if base and ours:
            for stage, metric in (("expert_stage_s", "expert_speedup"), ("aggregator_stage_s", "aggregator_speedup"),
                                  ("end_to_end_s", "e2e_speedup")):
                if ours[stage] > 0:
                    out[wl][metric].append(base[stage] / ours[stage])
        for tau, suffix in (("tau1", "tau1"), ("tau067", "tau067")):
            run = idx.get((wl, "ilp", tau, seed)) or idx.get((wl, "round_robin", tau, seed))
            if run:
                out[wl][f"skip_{suffix}"].append(100 * run["skip_rate"])
                if run["accuracy_always_aggregate"] is not None:
                    out[wl][f"acc_delta_{suffix}"].append(100 * (run["accuracy"] - run["accuracy_always_aggregate"]))
    return out


def paper_table(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for wl, metrics in per_seed_metrics(runs).items():
        ds = dataset_of(wl)
        for m in METRICS:
            vals = metrics.get(m, [])
            if not vals:
                continue
            mean = statistics.mean(vals)
            paper = PAPER[ds][m] if ds else None
            rows.append({"dataset": ds or "", "workload": wl, "metric": m, "simulated": round(mean, 4),
                         "simulated_std": round(statistics.stdev(vals), 4) if len(vals) > 1 else 0.0,
                         "paper": paper, "n_seeds": len(vals),
                         "rel_diff": round((mean - paper) / abs(paper), 4) if paper else None})
    return rows


def write_csv(path: Path, rows: list[dict[str, Any]], columns: Iterable[str] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(columns or (rows[0] if rows else []))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def render_markdown(rows: list[dict[str, Any]], command: str) -> str:
    labels = {"expert_speedup": "Expert-stage speedup", "aggregator_speedup": "Aggregator-stage speedup",
              "e2e_speedup": "End-to-end speedup", "acc_delta_tau1": "Accuracy change tau=1 (pp)",
              "acc_delta_tau067": "Accuracy change tau=2/3 (pp)", "skip_tau1": "Aggregator skipped tau=1 (%)",
              "skip_tau067": "Aggregator skipped tau=2/3 (%)"}
    workloads = list(dict.fromkeys(r["workload"] for r in rows))
    cell = {(r["workload"], r["metric"]): r for r in rows}
    out = ["# MOSAIC vs round-robin: simulated (mean ± std over seeds) | paper", "",
           f"Regenerate: `{command}`. Definitions: results/README.md.", "",
           "| metric | " + " | ".join(workloads) + " |", "|---|" + "---|" * len(workloads)]
    for m in METRICS:
        vals = []
        for wl in workloads:
            r = cell.get((wl, m))
            if r is None:
                vals.append("–")
                continue
            unit = "x" if m.endswith("speedup") else ""
            paper = f"{r['paper']}{unit}" if r["paper"] is not None else "–"
            vals.append(f"{r['simulated']:.2f}{unit} ± {r['simulated_std']:.2f} \\| {paper}")
        out.append(f"| {labels[m]} | " + " | ".join(vals) + " |")
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------ data behind the figures

def idle_fractions(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Share of GPU time idle over the whole pipeline, per run (tau=1 runs only)."""
    rows = []
    for r in runs:
        if (r.get("aggregation") or {}).get("name") != "tau1":
            continue
        total = sum(w["busy_s"] + w["idle_s"] for w in r["workers"])
        rows.append({"workload": r["workload"], "scheduler": r["scheduler"], "seed": r["seed"],
                     "idle_fraction": sum(w["idle_s"] for w in r["workers"]) / total if total else 0.0})
    return rows


def tau_sweep(query_csv: Path, workload: str, seed: int, taus: Iterable[float]) -> list[dict[str, Any]]:
    """Skip rate and accuracy change for each tau, from one always-aggregate run's queries.csv."""
    with open(query_csv) as f:
        qs = list(csv.DictReader(f))
    always = sum(q["aggregator_answer"] == q["gold"] for q in qs) / len(qs)
    rows = []
    for tau in taus:
        skip = [q["majority"] != "" and float(q["agreement"]) >= tau - 1e-3 for q in qs]
        final = [q["majority"] if s else q["aggregator_answer"] for q, s in zip(qs, skip)]
        acc = sum(a == q["gold"] for a, q in zip(final, qs)) / len(qs)
        rows.append({"workload": workload, "seed": seed, "tau": round(tau, 4), "skip_pct": 100 * sum(skip) / len(qs),
                     "acc_delta_pp": 100 * (acc - always)})
    return rows


def length_percentiles(workload: str, trace_rows: Iterable[dict[str, str]]) -> list[dict[str, Any]]:
    """Output-length percentiles 0..100 per (model, stage): enough for CDF plots, small to commit."""
    import numpy as np

    by: dict[tuple[str, str], list[int]] = defaultdict(list)
    for t in trace_rows:
        by[(t["model"], t["stage"])].append(int(t["output_tokens"]))
    rows = []
    for (model, stage), vals in sorted(by.items()):
        qs = np.percentile(vals, np.arange(101))
        rows += [{"workload": workload, "model": model, "stage": stage, "n": len(vals), "mean": float(np.mean(vals)),
                  "percentile": p, "output_tokens": float(q)} for p, q in enumerate(qs)]
    return rows
