"""Collect a sweep's run directories into the paper's result table and the data behind the figures.

Definitions (the paper's, DESIGN.md; also in results/paper_comparison.md):
- Baseline = round_robin experts (first-seen order) + the aggregator on every question (aggregation
  `always`). MOSAIC = ilp experts (K = 2) + the tau gate. The aggregator is one tensor-parallel
  engine in both arms, so the aggregator-stage speedup is the gate's alone. Speedup = baseline time
  / MOSAIC time for the same workload and seed: expert stage, aggregator stage and end to end (the
  two stages back to back), at tau = 2/3 (the paper's headline) and at tau = 1.
- Accuracy change = accuracy with tau minus accuracy had the aggregator always run, in points (the
  scheduler never changes answers). Skip = share of questions answered without the aggregator, in %.
- A variant is a run whose `settings` differ from the paper's (PAPER_SETTINGS); only the settings a
  policy reads count for it (K for the ILP, rr_order for round-robin), so a K ablation is compared
  with the main round-robin baseline, and a round-robin order variant with the main ILP.
Each metric is computed per seed, then mean and sample std over seeds.

The runs are tables here (pandas): `runs_frame` has a row per run, `per_seed_metrics` puts each
MOSAIC arm beside its baseline by merging on (variant, workload, seed) and melts the metrics to one
row per seed, and the paper table is their group means. Means of stage walls are correctly rounded
(statistics.mean, math.fsum), so committed numbers do not move with a summation order.
"""
from __future__ import annotations

import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

from mosaic.analysis.runs import runs_table


# The paper's experiment: a run's `settings` (summary.json) differ from these only in a variant.
PAPER_SETTINGS: dict[str, Any] = {"K": 2, "rr_order": "first_seen", "routing": "router", "replacement": True,
                                  "placement": "tp", "coupling": "measured", "shard_cost": "proportional"}
# Settings only one policy's plan reads; the rest change every policy's run.
POLICY_SETTINGS = {"K": {"ilp"}, "rr_order": {"round_robin"}, "shard_cost": {"ilp"}}
BASELINE, MOSAIC = ("round_robin", "always"), "ilp"
TAUS = ("tau067", "tau1")   # headline first

# The paper's table (DESIGN.md), MOSAIC vs round-robin; stage speedups at tau = 2/3. The paper
# reports no speedups at tau = 1: those rows have no paper value.
PAPER: dict[str, dict[str, float]] = {
    "mmlu_pro": {"expert_speedup": 1.69, "aggregator_speedup_tau067": 1.74, "e2e_speedup_tau067": 1.71,
                 "acc_delta_tau1": 0.24, "acc_delta_tau067": -0.62, "skip_tau1": 45.71, "skip_tau067": 84.62},
    "medmcqa": {"expert_speedup": 1.53, "aggregator_speedup_tau067": 4.23, "e2e_speedup_tau067": 2.04,
                "acc_delta_tau1": -0.04, "acc_delta_tau067": 0.32, "skip_tau1": 47.48, "skip_tau067": 90.18},
    "gpqa": {"expert_speedup": 2.54, "aggregator_speedup_tau067": 1.53, "e2e_speedup_tau067": 2.34,
             "acc_delta_tau1": 1.00, "acc_delta_tau067": 0.49, "skip_tau1": 37.37, "skip_tau067": 87.37},
}
METRICS = ("expert_speedup", "aggregator_speedup_tau067", "e2e_speedup_tau067", "aggregator_speedup_tau1",
           "e2e_speedup_tau1", "acc_delta_tau1", "acc_delta_tau067", "skip_tau1", "skip_tau067")
HEADLINE_SPEEDUPS = ("expert_speedup", "aggregator_speedup_tau067", "e2e_speedup_tau067")
LABELS = {"expert_speedup": "Expert-stage speedup", "aggregator_speedup_tau067": "Aggregator-stage speedup, tau=2/3",
          "e2e_speedup_tau067": "End-to-end speedup, tau=2/3", "aggregator_speedup_tau1": "Aggregator-stage speedup, tau=1",
          "e2e_speedup_tau1": "End-to-end speedup, tau=1", "acc_delta_tau1": "Accuracy change tau=1 (pp)",
          "acc_delta_tau067": "Accuracy change tau=2/3 (pp)", "skip_tau1": "Aggregator skipped tau=1 (%)",
          "skip_tau067": "Aggregator skipped tau=2/3 (%)"}
# Verdict rules. Speedups and skip rates: within 15% of the paper's value, relative. Accuracy
# changes are differences of a few tenths of a point (-0.62 .. +1.00): 15% of them is far below one
# question (0.5 pp on GPQA's 198, 0.05 pp on MMLU-Pro's 2100) and below the seed-to-seed spread, so
# they get an absolute tolerance of 1 pp instead.
ACC_TOLERANCE_PP = 1.0
REL_TOLERANCE = 0.15
COLUMNS = ("variant", "dataset", "workload", "metric", "simulated", "simulated_std", "paper", "rel_diff",
           "abs_diff", "within_15pct", "rule", "n_seeds")

# Paper stage walls (DESIGN.md, 5.3): (end to end, aggregator stage); expert stage = the difference.
PAPER_STAGES = {"mmlu_pro": {"baseline": (4149.9, 1514.7), "mosaic": (2427.6, 870.5)},
                "medmcqa": {"baseline": (1321.0, 516.49), "mosaic": (648.6, 122.09)},
                "gpqa": {"baseline": (2696.4, 348.0), "mosaic": (1153.1, 227.73)}}
# Table 3: slots per expert at seed 0.
PAPER_SLOTS = {"mmlu_pro": {"LlamaR1": 1070, "QwenR1": 1428, "Gemma": 1632, "Exaone": 547, "GLM": 667, "Qwen": 956},
               "medmcqa": {"LlamaR1": 620, "QwenR1": 144, "Gemma": 4195, "Exaone": 625, "GLM": 1283, "Qwen": 5682},
               "gpqa": {"LlamaR1": 429, "QwenR1": 158, "Gemma": 4, "Exaone": 3, "GLM": 0, "Qwen": 0}}
# Table 4: MOSAIC expert stage per seed.
PAPER_SEED_WALLS = {"mmlu_pro": (1601, 1668, 1637), "medmcqa": (585, 551, 527), "gpqa": (925, 945, 896)}
# Fig. 7 (MMLU-Pro): bucket -> (questions, mean output tokens per question); Spearman rho.
PAPER_BUCKETS = {"mmlu_pro": {"3:0": (960, 1024), "2:1": (817, 1915), "1:1:1": (323, 2696)}}
PAPER_RHO = {"mmlu_pro": -0.27}
# Fig. 2b (MMLU-Pro, round-robin): busy seconds per GPU by the models it holds.
PAPER_RR_WORKERS = {"mmlu_pro": {frozenset({"Gemma", "Exaone"}): 430, frozenset({"QwenR1", "GLM"}): 2620,
                                 frozenset({"Qwen"}): 165, frozenset({"LlamaR1"}): 2546}}


def dataset_of(workload: str) -> str | None:
    for prefix in ("trace_", "synth_", ""):
        if workload.startswith(prefix) and workload[len(prefix):] in PAPER:
            return workload[len(prefix):]
    return None


# ------------------------------------------------------------------ variants

def _scalar(v: Any) -> Any:
    """A setting as its summary had it, from a table cell: NaN (no value in this run) is None and a
    whole float is the int it was before a column of ints and None made it a float."""
    if isinstance(v, float):
        return None if v != v else int(v) if v.is_integer() else v
    return v.item() if hasattr(v, "item") else v


def variant_of(run: dict[str, Any] | pd.Series) -> tuple[tuple[str, Any], ...]:
    """The settings in which this run differs from the paper's, among those its policy reads: `run`
    a summary, or a row of load_runs' table (its `settings.*` columns). A summary written before
    `settings` existed counts as the paper's setting."""
    if isinstance(run, pd.Series):
        given = {k: _scalar(run[f"settings.{k}"]) for k in PAPER_SETTINGS if f"settings.{k}" in run}
        run = {"scheduler": run["scheduler"], "settings": given}
    settings = {**PAPER_SETTINGS, **(run.get("settings") or {})}
    return tuple((k, settings[k]) for k in PAPER_SETTINGS
                 if settings[k] != PAPER_SETTINGS[k] and run["scheduler"] in POLICY_SETTINGS.get(k, {run["scheduler"]}))


def _project(variant: tuple[tuple[str, Any], ...], scheduler: str) -> tuple[tuple[str, Any], ...]:
    return tuple((k, v) for k, v in variant if scheduler in POLICY_SETTINGS.get(k, {scheduler}))


def variant_label(variant: tuple[tuple[str, Any], ...]) -> str:
    def fmt(v: Any) -> str:
        return "none" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
    return ", ".join(f"{k}={fmt(v)}" for k, v in variant) or "main"


def _agg(run: dict[str, Any]) -> str | None:
    return (run.get("aggregation") or {}).get("name")


# The columns of a run the table and the figures' data are computed from.
_RUN_COLUMNS = ("expert_stage_s", "aggregator_stage_s", "end_to_end_s", "skip_rate", "accuracy",
                "accuracy_always_aggregate")


def runs_frame(runs: pd.DataFrame | Iterable[dict[str, Any]]) -> pd.DataFrame:
    """From load_runs' table (mosaic.analysis.runs; or the summaries it is made of), what the paper
    table reads: a row per run with its variant (label, and the settings tuple as `_variant`),
    workload, scheduler, aggregation, seed and summary numbers. A run given twice (same variant,
    workload, scheduler, aggregation and seed) counts once, the later one."""
    if not isinstance(runs, pd.DataFrame):
        runs = runs_table(list(runs))
    keys = ["variant", "_variant", "workload", "scheduler", "aggregation", "seed"]
    if runs.empty:
        return pd.DataFrame(columns=[*keys, *_RUN_COLUMNS])
    variants = [variant_of(row) for _, row in runs.iterrows()]
    aggregation = runs["aggregation.name"] if "aggregation.name" in runs else pd.Series(None, index=runs.index)
    df = pd.DataFrame({"variant": [variant_label(v) for v in variants], "_variant": variants,
                       "workload": runs["workload"].tolist(), "scheduler": runs["scheduler"].tolist(),
                       "aggregation": [None if a != a else a for a in aggregation],
                       "seed": [int(x) for x in runs["seed"]],
                       **{c: (runs[c].tolist() if c in runs else [None] * len(runs)) for c in _RUN_COLUMNS}})
    return df.drop_duplicates(["variant", "workload", "scheduler", "aggregation", "seed"], keep="last")


def find_run(runs: list[dict[str, Any]], workload: str, scheduler: str, seed: int, aggregation: str | None = None,
             variant: tuple = ()) -> dict[str, Any] | None:
    """One run of the given kind; with aggregation None, any (for the expert stage, which no tau changes)."""
    for r in runs:
        if (r["workload"], r["scheduler"], r["seed"]) == (workload, scheduler, seed) and variant_of(r) == variant \
                and aggregation in (None, _agg(r)):
            return r
    return None


def _arm(df: pd.DataFrame, keys: pd.DataFrame, scheduler: str, aggregation: str, prefix: str) -> pd.DataFrame:
    """`keys` with the arm's run (scheduler, aggregation) of each key's projected variant beside it,
    its columns prefixed; `{prefix}found` says whether there is one."""
    arm = df[(df["scheduler"] == scheduler) & (df["aggregation"] == aggregation)]
    arm = arm[["variant", "workload", "seed", *_RUN_COLUMNS]].assign(found=True)
    arm = arm.rename(columns={"variant": f"{scheduler}_variant", **{c: f"{prefix}{c}" for c in (*_RUN_COLUMNS, "found")}})
    out = keys.merge(arm, how="left", on=[f"{scheduler}_variant", "workload", "seed"])
    out[f"{prefix}found"] = out[f"{prefix}found"].fillna(False).astype(bool)
    return out


def per_seed_metrics(runs: pd.DataFrame | list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (variant, workload, seed, metric) with a value: the seeds that have every run the
    metric needs, MOSAIC's runs beside the baseline's of the same workload and seed (each arm's
    variant projected onto the settings its policy reads). Ordered main first, then by variant,
    workload and seed; metrics in METRICS order."""
    df = runs_frame(runs)
    keys = df[df["scheduler"].isin([BASELINE[0], MOSAIC])][["variant", "_variant", "workload", "seed"]]
    keys = keys.drop_duplicates(["variant", "workload", "seed"])
    if keys.empty:   # no run of either arm: nothing to put side by side
        return pd.DataFrame(columns=["variant", "_variant", "workload", "seed", "metric", "value"])
    for sched in (BASELINE[0], MOSAIC):
        keys[f"{sched}_variant"] = pd.Series([variant_label(_project(v, sched)) for v in keys["_variant"]],
                                             index=keys.index, dtype=object)
    t = _arm(df, keys, BASELINE[0], BASELINE[1], "base_")
    for tau in TAUS:
        t = _arm(df, t, MOSAIC, tau, f"{tau}_")
    own_base = t["base_found"] & (t[f"{BASELINE[0]}_variant"] == t["variant"])
    any_ours = t[[f"{tau}_found" for tau in TAUS]].any(axis=1)
    own_ours = any_ours & (t[f"{MOSAIC}_variant"] == t["variant"])
    t = t[own_base | own_ours].copy()   # else both arms are another variant's runs
    # The expert stage does not depend on tau: the first tau with a run.
    expert = t[f"{TAUS[-1]}_expert_stage_s"].astype(float)
    for tau in reversed(TAUS[:-1]):
        expert = t[f"{tau}_expert_stage_s"].astype(float).where(t[f"{tau}_found"], expert)
    base_ok = t["base_found"]
    t["expert_speedup"] = (t["base_expert_stage_s"].astype(float) / expert).where(base_ok & (expert > 0))
    for tau in TAUS:
        ours = t[f"{tau}_found"]
        for m, col in (("aggregator_speedup", "aggregator_stage_s"), ("e2e_speedup", "end_to_end_s")):
            o = t[f"{tau}_{col}"].astype(float)
            t[f"{m}_{tau}"] = (t[f"base_{col}"].astype(float) / o).where(base_ok & ours & (o > 0))
        t[f"skip_{tau}"] = (100 * t[f"{tau}_skip_rate"].astype(float)).where(ours)
        always = t[f"{tau}_accuracy_always_aggregate"]
        t[f"acc_delta_{tau}"] = (100 * (t[f"{tau}_accuracy"].astype(float) - always.astype(float))).where(
            ours & always.notna())
    t["_order"] = [(len(v), label) for v, label in zip(t["_variant"], t["variant"])]
    t = t.sort_values(["_order", "workload", "seed"], kind="stable")
    long = t.melt(id_vars=["variant", "_variant", "workload", "seed"], value_vars=list(METRICS), var_name="metric")
    long = long.dropna(subset=["value"])
    long["metric"] = pd.Categorical(long["metric"], categories=METRICS, ordered=True)
    group = {key: i for i, key in enumerate(dict.fromkeys(zip(t["variant"], t["workload"])))}
    long["_group"] = [group[k] for k in zip(long["variant"], long["workload"])]
    return long.sort_values(["_group", "metric", "seed"], kind="stable").drop(columns="_group").reset_index(drop=True)


def verdict(metric: str, simulated: float, paper: float | None) -> tuple[str, str]:
    """(within_15pct yes/no or '' without a paper value, the rule applied)."""
    if metric.startswith("acc_delta"):
        rule = f"|diff| <= {ACC_TOLERANCE_PP:g} pp"
        return ("" if paper is None else "yes" if abs(simulated - paper) <= ACC_TOLERANCE_PP + 1e-9 else "no"), rule
    rule = f"|rel diff| <= {REL_TOLERANCE:.0%}"
    return ("" if paper is None else "yes" if abs(simulated - paper) <= REL_TOLERANCE * abs(paper) + 1e-9 else "no"), rule


def paper_table(runs: pd.DataFrame | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The table's rows from load_runs' table of the sweep (or its summaries): per variant, workload
    and metric, the mean and sample std over seeds, the paper's value and the verdict (COLUMNS)."""
    long = per_seed_metrics(runs)
    if long.empty:
        return []
    stats = long.groupby(["variant", "workload", "metric"], sort=False, observed=True)["value"].agg(
        ["mean", "std", "count"]).reset_index()
    rows = []
    for r in stats.itertuples(index=False):
        ds = dataset_of(r.workload)
        mean, m = float(r.mean), str(r.metric)
        paper = PAPER[ds].get(m) if ds else None
        within, rule = verdict(m, mean, paper)
        rows.append({"variant": r.variant, "dataset": ds or "", "workload": r.workload, "metric": m,
                     "simulated": round(mean, 4), "simulated_std": round(float(r.std), 4) if r.count > 1 else 0.0,
                     "paper": paper, "n_seeds": int(r.count),
                     "rel_diff": round((mean - paper) / abs(paper), 4) if paper else None,
                     "abs_diff": round(mean - paper, 4) if paper is not None else None,
                     "within_15pct": within, "rule": rule})
    return rows


def speedup_hits(rows: list[dict[str, Any]], variant: str = "main") -> dict[str, tuple[int, int]]:
    """Per workload: (headline speedups within 15%, headline speedups with a paper value)."""
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in rows:
        if r["variant"] == variant and r["metric"] in HEADLINE_SPEEDUPS and r["within_15pct"] in ("yes", "no"):
            out[r["workload"]][1] += 1
            out[r["workload"]][0] += r["within_15pct"] == "yes"
    return {wl: (h, n) for wl, (h, n) in out.items()}


def _variant_table(rows: list[dict[str, Any]]) -> list[str]:
    workloads = list(dict.fromkeys(r["workload"] for r in rows))
    cell = {(r["workload"], r["metric"]): r for r in rows}
    out = ["| metric | " + " | ".join(workloads) + " |", "|---|" + "---|" * len(workloads)]
    for m in METRICS:
        vals = []
        for wl in workloads:
            r = cell.get((wl, m))
            if r is None:
                vals.append("–")
                continue
            unit = "x" if "speedup" in m else ""
            paper = f"{r['paper']}{unit}" if r["paper"] not in (None, "") else "–"
            mark = {"yes": " ✓", "no": " ✗"}.get(r["within_15pct"], "")
            vals.append(f"{float(r['simulated']):.2f}{unit} ± {float(r['simulated_std']):.2f} \\| {paper}{mark}")
        if any(v != "–" for v in vals):
            out.append(f"| {LABELS[m]} | " + " | ".join(vals) + " |")
    return out


def render_markdown(rows: list[dict[str, Any]], command: str, backends: Sequence[str] = ("sim",)) -> str:
    """backends: those of the runs tabled; the values are "simulated" (the CSV's column name) only
    where every run is the simulator's."""
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    variants.sort(key=lambda v: v != "main")
    kinds = sorted(set(backends))
    source = "simulated" if kinds == ["sim"] else f"measured on {kinds[0]}" if len(kinds) == 1 else \
        f"from backends {', '.join(kinds)}"
    out = [f"# MOSAIC vs round-robin: {source} (mean ± std over seeds) | paper", "",
           f"Regenerate: `{command}`. Definitions: results/paper_comparison.md. ✓ / ✗: within 15% of the paper's value "
           f"(speedups, skip rates: relative; accuracy changes: within {ACC_TOLERANCE_PP:g} pp absolute). "
           "Speedups at tau=1 have no paper value.", ""]
    for v in variants:
        mine = [r for r in rows if r["variant"] == v]
        out += [f"## {'Main: the paper experiment' if v == 'main' else 'Variant: ' + v}", ""]
        hits = speedup_hits(rows, v)
        if hits:
            total = [sum(h for h, _ in hits.values()), sum(n for _, n in hits.values())]
            out += ["Headline speedups within 15%: " + ", ".join(f"{wl} {h}/{n}" for wl, (h, n) in hits.items())
                    + f" (all {total[0]}/{total[1]}).", ""]
        out += _variant_table(mine) + [""]
    return "\n".join(out)


# ------------------------------------------------------------------ data behind the figures

def idle_fractions(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Share of GPU time idle in the expert stage (where policies differ: the tensor-parallel
    aggregator keeps every GPU busy), per (workload, policy, seed) of the paper's setting."""
    paper = sorted((r for r in runs if not variant_of(r)),
                   key=lambda r: (r["workload"], r["scheduler"], r["seed"], str(_agg(r))))
    first = {}
    for r in paper:   # the expert stage does not depend on tau: one run per (workload, policy, seed)
        first.setdefault((r["workload"], r["scheduler"], r["seed"]), r)
    rows = []
    for (wl, sched, seed), r in first.items():
        parts = stage_breakdown(r)
        total = sum(p["stage_wall_s"] for p in parts)
        rows.append({"workload": wl, "scheduler": sched, "seed": seed,
                     "idle_fraction": sum(p["idle_s"] for p in parts) / total if total else 0.0})
    return rows


def tau_sweep(query_csv: Path, workload: str, seed: int, taus: Iterable[float]) -> list[dict[str, Any]]:
    """Skip rate and accuracy change for each tau, from one always-aggregate run's queries.csv."""
    qs = pd.read_csv(query_csv, dtype=str, keep_default_na=False)
    n = len(qs)
    always = int((qs["aggregator_answer"] == qs["gold"]).sum()) / n
    agreement = qs["agreement"].astype(float)
    rows = []
    for tau in taus:
        skip = (qs["majority"] != "") & (agreement >= tau - 1e-3)
        final = qs["majority"].where(skip, qs["aggregator_answer"])
        rows.append({"workload": workload, "seed": seed, "tau": round(tau, 4), "skip_pct": 100 * int(skip.sum()) / n,
                     "acc_delta_pp": 100 * (int((final == qs["gold"]).sum()) / n - always)})
    return rows


def length_percentiles(workload: str, trace_rows: Iterable[dict[str, str]]) -> list[dict[str, Any]]:
    """Output-length percentiles 0..100 per (model, stage): enough for CDF plots, small to commit."""
    import numpy as np

    t = pd.DataFrame(list(trace_rows), columns=["model", "stage", "output_tokens"])
    t["output_tokens"] = t["output_tokens"].astype(int)
    rows = []
    for (model, stage), vals in t.groupby(["model", "stage"], sort=True)["output_tokens"]:
        qs = np.percentile(vals, np.arange(101))
        rows += [{"workload": workload, "model": model, "stage": stage, "n": len(vals), "mean": float(np.mean(vals)),
                  "percentile": p, "output_tokens": float(q)} for p, q in enumerate(qs)]
    return rows



def stage_breakdown(run: dict[str, Any], stage: str = "expert") -> list[dict[str, Any]]:
    """Fig. 3a: per worker, the stage's wall split into model loading, generating and idle (the
    rest: engine start-up, unloading, waiting for the slowest worker), from the run's sessions.csv."""
    sessions = pd.read_csv(Path(run["_dir"]) / "sessions.csv", dtype={"model": str, "stage": str})
    sessions = sessions[sessions["stage"] == stage]
    wall = run[f"{stage}_stage_s"]
    paper = PAPER_RR_WORKERS.get(run["workload"], {}) if run["scheduler"] == "round_robin" else {}
    busy = sessions.assign(load=sessions["load_end_s"] - sessions["load_start_s"],
                           gen=sessions["run_end_s"] - sessions["run_start_s"]).groupby("worker", sort=True)
    load, gen = busy["load"].agg(math.fsum), busy["gen"].agg(math.fsum)   # correctly rounded: order-free
    models = busy["model"].agg(lambda m: list(dict.fromkeys(m)))
    rows = []
    for w in sorted(set(sessions["worker"].astype(int)) | {wk["id"] for wk in run["workers"]}):
        mine = models.get(w, [])
        ld, gn = float(load.get(w, 0.0)), float(gen.get(w, 0.0))
        rows.append({"workload": run["workload"], "scheduler": run["scheduler"], "seed": run["seed"], "worker": w,
                     "models": "+".join(mine), "load_s": ld, "generate_s": gn, "idle_s": max(0.0, wall - ld - gn),
                     "stage_wall_s": wall, "paper_busy_s": paper.get(frozenset(mine), "")})
    return rows


def stage_decomposition(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fig. 6: expert + aggregator stage walls, baseline (RR, always) vs MOSAIC (ILP, tau = 2/3),
    mean over seeds, with the paper's beside."""
    df = runs_frame(runs) if runs else pd.DataFrame()
    if df.empty:
        return []
    df = df[df["variant"] == "main"]
    arms = {"baseline": (BASELINE[0], BASELINE[1]), "mosaic": (MOSAIC, "tau067")}
    parts = [df[(df["scheduler"] == sch) & (df["aggregation"] == agg)].assign(arm=arm)
             for arm, (sch, agg) in arms.items()]
    walls = pd.concat(parts).groupby(["workload", "arm"], sort=True).agg(
        # statistics.mean: correctly rounded, so the committed means do not move with the summation order
        n_seeds=("seed", "size"), expert_s=("expert_stage_s", statistics.mean),
        aggregator_s=("aggregator_stage_s", statistics.mean), end_to_end_s=("end_to_end_s", statistics.mean))
    rows = []
    for (wl, arm), r in walls.iterrows():
        ds = dataset_of(wl)
        e2e, agg = PAPER_STAGES[ds][arm] if ds in PAPER_STAGES and not wl.startswith(("trace_", "synth_")) \
            else (None, None)
        rows.append({"workload": wl, "arm": arm, "n_seeds": int(r["n_seeds"]), "expert_s": float(r["expert_s"]),
                     "aggregator_s": float(r["aggregator_s"]), "end_to_end_s": float(r["end_to_end_s"]),
                     "paper_expert_s": round(e2e - agg, 2) if e2e else "", "paper_aggregator_s": agg or "",
                     "paper_end_to_end_s": e2e or ""})
    return rows


def bucket_label(votes: int, k: int) -> str:
    """3 of 3 agree -> '3:0', 2 of 3 -> '2:1', all differ -> '1:1:1' (k = 3, the paper's buckets)."""
    if votes >= k:
        return f"{k}:0"
    if votes <= 1:
        return ":".join(["1"] * k)
    return f"{votes}:{k - votes}"


def question_lengths(run: dict[str, Any]) -> list[tuple[float, int]]:
    """(agreement, output tokens summed over the question's expert requests) per question."""
    d = Path(run["_dir"])
    qs = pd.read_csv(d / "queries.csv", dtype={"query_id": str})
    if "expert_output_tokens" not in qs:   # runs written before the column existed
        trace = pd.read_csv(d / "trace.csv", usecols=["query_id", "stage", "output_tokens"], dtype={"query_id": str})
        per_query = trace[trace["stage"] == "expert"].groupby("query_id")["output_tokens"].sum()
        qs["expert_output_tokens"] = qs["query_id"].map(per_query).fillna(0)
    return [(float(a), int(n)) for a, n in zip(qs["agreement"], qs["expert_output_tokens"])]


def agreement_buckets(run: dict[str, Any], k: int = 3) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Fig. 7: per agreement bucket, questions, share and output tokens per question (with the
    paper's), Spearman rho(length, agreement); and ECDF percentiles per bucket.

    Lengths are per question, averaged over its k expert answers (`mean_tokens`; the sum is
    `mean_tokens_sum`): the paper's bucket means weighted by their sizes give 1628 tokens, the mean
    of one MMLU-Pro expert answer (40% reasoning slots at ~3400, 60% instruct at ~400), not of three."""
    import numpy as np
    from scipy.stats import spearmanr

    pairs = question_lengths(run)
    wl = run["workload"]
    ds = dataset_of(wl)
    rho = float(spearmanr([a for a, _ in pairs], [n for _, n in pairs]).statistic) if len(pairs) > 2 else float("nan")
    by: dict[str, list[int]] = defaultdict(list)
    for a, n in pairs:
        by[bucket_label(round(a * k), k)].append(n / k)
    paper = PAPER_BUCKETS.get(ds, {}) if not wl.startswith(("trace_", "synth_")) else {}
    paper_total = sum(n for n, _ in paper.values())
    rows, ecdf = [], []
    for b in sorted(by, key=lambda b: -int(b.split(":")[0])):
        vals = np.array(by[b])
        p = paper.get(b)
        rows.append({"workload": wl, "seed": run["seed"], "bucket": b, "n": len(vals),
                     "share_pct": 100 * len(vals) / len(pairs), "mean_tokens": float(vals.mean()),
                     "mean_tokens_sum": float(k * vals.mean()),
                     "median_tokens": float(np.median(vals)), "spearman_rho": rho,
                     "paper_n": p[0] if p else "", "paper_share_pct": 100 * p[0] / paper_total if p else "",
                     "paper_mean_tokens": p[1] if p else "", "paper_spearman_rho": PAPER_RHO.get(ds, "") if p else ""})
        ecdf += [{"workload": wl, "bucket": b, "percentile": q, "output_tokens": float(v)}
                 for q, v in enumerate(np.percentile(vals, np.arange(101)))]
    return rows, ecdf


def requests_per_model(run: dict[str, Any]) -> dict[str, int]:
    if "expert_requests_per_model" in run:
        return dict(run["expert_requests_per_model"])
    # Summaries written before the key existed: counted from the trace, in order of first use.
    trace = pd.read_csv(Path(run["_dir"]) / "trace.csv", usecols=["model", "stage"], dtype=str)
    return {m: int(n) for m, n in trace[trace["stage"] == "expert"]["model"].value_counts(sort=False).items()}


def slot_table(runs: list[dict[str, Any]], seed: int = 0) -> list[dict[str, Any]]:
    """Table 3: expert slots per model at one seed, for every routing option the sweep ran, vs the paper."""
    seen, rows = set(), []
    for r in sorted(runs, key=lambda r: (r["workload"], r["scheduler"] != MOSAIC)):
        routing = dict(variant_of(r)).get("routing", PAPER_SETTINGS["routing"])
        others = [kv for kv in variant_of(r) if kv[0] != "routing"]
        ds = dataset_of(r["workload"])
        if r["seed"] != seed or others or ds is None or r["workload"].startswith(("trace_", "synth_")) \
                or (r["workload"], routing) in seen:
            continue
        seen.add((r["workload"], routing))
        ours = requests_per_model(r)
        for model in dict.fromkeys([*PAPER_SLOTS[ds], *ours]):
            rows.append({"workload": r["workload"], "routing": routing, "model": model, "slots": ours.get(model, 0),
                         "paper_slots": PAPER_SLOTS[ds].get(model, "")})
    return rows


def seed_walls(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Table 4: MOSAIC (ILP, paper setting) expert-stage wall per seed vs the paper's."""
    rows, seen = [], set()
    for r in sorted(runs, key=lambda r: (r["workload"], r["seed"])):
        ds = dataset_of(r["workload"])
        if r["scheduler"] != MOSAIC or variant_of(r) or (r["workload"], r["seed"]) in seen:
            continue
        seen.add((r["workload"], r["seed"]))
        paper = PAPER_SEED_WALLS[ds][r["seed"]] if ds and r["seed"] < 3 and not r["workload"].startswith(
            ("trace_", "synth_")) else None
        rows.append({"workload": r["workload"], "seed": r["seed"], "expert_stage_s": r["expert_stage_s"],
                     "paper_expert_stage_s": paper if paper is not None else "",
                     "rel_diff": round((r["expert_stage_s"] - paper) / paper, 4) if paper else ""})
    return rows


def _num(v: Any, fmt: str = ".0f") -> str:
    return "–" if v in ("", None) else format(float(v), fmt)


def render_artefacts(tables: dict[str, list[dict[str, Any]]], command: str) -> str:
    """The paper's Fig. 3a, 6, 7 and Tables 3, 4 as markdown tables, ours beside the paper's."""
    out = ["# The paper's figures and tables: simulated vs paper", "",
           f"Generated by `experiments/collect.py` (regenerate: `{command}`); data in figure_data/, "
           "plots in figures/. Paper setting (PAPER_SETTINGS), seed 0 unless stated.", ""]
    out += ["## Fig. 6: end-to-end wall time by stage (mean over seeds), s", "",
            "| workload | arm | expert stage | aggregator stage | end to end |", "|---|---|---|---|---|"]
    for r in tables.get("fig6_decomposition", []):
        out.append(f"| {r['workload']} | {r['arm']} | {_num(r['expert_s'])} \\| {_num(r['paper_expert_s'])} | "
                   f"{_num(r['aggregator_s'])} \\| {_num(r['paper_aggregator_s'])} | "
                   f"{_num(r['end_to_end_s'])} \\| {_num(r['paper_end_to_end_s'])} |")
    out += ["", "## Fig. 7: output tokens per question by agreement bucket (ours \\| paper)", "",
            "Tokens: per question, mean over its expert answers (the paper's scale; see report.agreement_buckets).", "",
            "| workload | bucket | questions | share % | mean tokens | median tokens | Spearman rho |",
            "|---|---|---|---|---|---|---|"]
    for r in tables.get("fig7_buckets", []):
        out.append(f"| {r['workload']} | {r['bucket']} | {r['n']} \\| {_num(r['paper_n'])} | "
                   f"{_num(r['share_pct'], '.1f')} \\| {_num(r['paper_share_pct'], '.1f')} | "
                   f"{_num(r['mean_tokens'])} \\| {_num(r['paper_mean_tokens'])} | {_num(r['median_tokens'])} | "
                   f"{_num(r['spearman_rho'], '.2f')} \\| {_num(r['paper_spearman_rho'], '.2f')} |")
    slots = tables.get("table3_slots", [])
    routings = list(dict.fromkeys(r["routing"] for r in slots))
    out += ["", "## Table 3: expert slots per model, seed 0", "",
            "| workload | model | " + " | ".join(f"ours ({x})" for x in routings) + " | paper |",
            "|---|---|" + "---|" * (len(routings) + 1)]
    cell = {(r["workload"], r["model"], r["routing"]): r for r in slots}
    for wl, model in dict.fromkeys((r["workload"], r["model"]) for r in slots):
        paper = next((cell[(wl, model, x)]["paper_slots"] for x in routings if (wl, model, x) in cell), "")
        out.append(f"| {wl} | {model} | " + " | ".join(str(cell[(wl, model, x)]["slots"]) if (wl, model, x) in cell
                                                      else "–" for x in routings) + f" | {_num(paper)} |")
    out += ["", "## Table 4: MOSAIC expert-stage wall per seed, s (ours \\| paper)", "",
            "| workload | seed | expert stage | rel diff |", "|---|---|---|---|"]
    for r in tables.get("table4_seed_walls", []):
        out.append(f"| {r['workload']} | {r['seed']} | {_num(r['expert_stage_s'])} \\| "
                   f"{_num(r['paper_expert_stage_s'])} | {_num(r['rel_diff'], '+.1%')} |")
    if tables.get("diagnostics"):
        out += [""] + render_diagnostics(tables["diagnostics"])
    out += ["", "## Fig. 3a: expert stage per GPU, round-robin vs data-parallel, s", "",
            "| workload | policy | GPU | models | load | generate | idle | paper busy (RR, same models) |",
            "|---|---|---|---|---|---|---|---|"]
    for r in tables.get("fig3a_breakdown", []):
        out.append(f"| {r['workload']} | {r['scheduler']} | {r['worker']} | {r['models']} | {_num(r['load_s'])} | "
                   f"{_num(r['generate_s'])} | {_num(r['idle_s'])} | {_num(r['paper_busy_s'])} |")
    return "\n".join(out) + "\n"


def stage_diagnostics(runs: list[dict[str, Any]], seed: int = 0) -> list[dict[str, Any]]:
    """The numbers results/paper_comparison.md explains the misses with, per (variant, workload) at one seed:
    the aggregator stage always vs gated (requests, tokens, wall, tok/s) and each arm's slowest
    expert-stage GPU (its models, prompts, output tokens, wall)."""
    rows = []
    for r in sorted(runs, key=lambda r: (variant_label(variant_of(r)), r["workload"])):
        arm = {BASELINE: "baseline", (MOSAIC, "tau067"): "mosaic"}.get((r["scheduler"], _agg(r)))
        variant = variant_of(r)
        if arm is None or r["seed"] != seed or any(k not in ("routing",) for k, _ in variant):
            continue
        trace = pd.read_csv(Path(r["_dir"]) / "trace.csv", usecols=["stage", "worker", "output_tokens"],
                            dtype={"stage": str})
        agg = trace.loc[trace["stage"] == "aggregator", "output_tokens"]
        worst = max((w for w in stage_breakdown(r)), key=lambda w: w["load_s"] + w["generate_s"])
        expert = trace[(trace["stage"] == "expert") & (trace["worker"] == worst["worker"])]
        tokens = int(expert["output_tokens"].sum())
        rows.append({"variant": variant_label(variant), "workload": r["workload"], "arm": arm,
                     "aggregator_requests": len(agg), "aggregator_tokens": int(agg.sum()),
                     "aggregator_mean_tokens": int(agg.sum()) / len(agg) if len(agg) else 0.0,
                     "aggregator_s": r["aggregator_stage_s"],
                     "aggregator_tokens_per_s": sum(agg) / r["aggregator_stage_s"] if r["aggregator_stage_s"] else 0.0,
                     "expert_s": r["expert_stage_s"], "expert_lower_bound_s": r.get("expert_lower_bound_s"),
                     "slowest_gpu": worst["worker"], "slowest_gpu_models": worst["models"],
                     "slowest_gpu_prompts": len(expert), "slowest_gpu_tokens": tokens,
                     "slowest_gpu_busy_s": worst["load_s"] + worst["generate_s"],
                     "slowest_gpu_tokens_per_s": tokens / worst["generate_s"] if worst["generate_s"] else 0.0})
    return rows


def render_diagnostics(rows: list[dict[str, Any]]) -> list[str]:
    out = ["## Diagnostics: what the misses come from (seed 0)", "",
           "Aggregator stage: baseline = aggregator on every question, mosaic = tau=2/3 gate (same TP engine). "
           "Slowest GPU: the expert-stage GPU with the most load + generate time.", "",
           "| variant | workload | arm | aggregator: requests, tokens (mean), wall, tok/s | expert stage (LP bound) | "
           "slowest GPU: models, prompts, tokens, busy, tok/s |", "|---|---|---|---|---|---|"]
    for r in rows:
        lb = r["expert_lower_bound_s"]
        out.append(f"| {r['variant']} | {r['workload']} | {r['arm']} | {r['aggregator_requests']}, "
                   f"{r['aggregator_tokens'] / 1e6:.2f} M ({r['aggregator_mean_tokens']:.0f}), {r['aggregator_s']:.0f} s, "
                   f"{r['aggregator_tokens_per_s']:.0f} | {r['expert_s']:.0f} s"
                   + (f" ({lb:.0f} s)" if lb else "") + f" | {r['slowest_gpu_models']}, {r['slowest_gpu_prompts']}, "
                   f"{r['slowest_gpu_tokens'] / 1e6:.2f} M, {r['slowest_gpu_busy_s']:.0f} s, "
                   f"{r['slowest_gpu_tokens_per_s']:.0f} |")
    return out
