"""Figures, drawn from Traces or from the CSV files the collector writes into results/."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Sequence

import matplotlib.pyplot as plt

from mosaic.core import serde, tables
from mosaic.core.errors import ConfigError
from mosaic.run.timeline import draw as draw_timeline
from mosaic.trace import Trace

# No backend is chosen here: a notebook keeps its inline backend and shows every figure; the
# modules that write files (mosaic/analysis/figures.py) select Agg themselves.

SPEEDUPS = ("expert_speedup", "aggregator_speedup_tau067", "e2e_speedup_tau067")  # the paper's headline


def panel_grid(n: int, panel: tuple[float, float] = (3.6, 2.9), ncols: int = 3, **kwargs):
    """n panels in rows of at most `ncols` (a paper-width figure, not an n-wide strip); the unused
    cells of the last row are hidden. Returns the figure and the n axes, row by row."""
    n = max(1, n)
    cols = min(ncols, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(panel[0] * cols, panel[1] * rows), squeeze=False, **kwargs)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def figure_legend(fig, axes, title: str) -> None:
    """One legend for all panels (every label once, from whichever panel has it) beside the title,
    above the panels, so that it covers no data; then the layout, leaving room for both."""
    seen: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, handle)
    fig.suptitle(title, fontsize=10, x=0.02, ha="left")
    fig.legend(list(seen.values()), list(seen), loc="upper right", ncol=len(seen), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.94))


def read_csv(path: Path) -> list[dict[str, str]]:
    return tables.read_csv(path)


def session_rows(stages: Sequence[Trace]) -> list[dict[str, Any]]:
    """The rows sessions.csv holds for these stages (what the timeline draws from)."""
    return [dict(serde.to_dict(s), stage=t.stage) for t in stages for s in t.sessions]


def timeline(rows: Iterable[dict[str, Any]], title: str, ax=None, xmax: float | None = None,
             n_workers: int | None = None):
    """Per-worker Gantt (mosaic/run/timeline.py draws it), on a new pyplot axis if none is given."""
    rows = list(rows)
    if ax is None:
        n = n_workers or (max(int(r["worker"]) for r in rows) + 1 if rows else 1)
        _, ax = plt.subplots(figsize=(10, 0.6 + 0.5 * n))
    return draw_timeline(rows, title, ax, xmax, n_workers)


def timelines_figure(figure_data: Path, workload: str, policies=("round_robin", "ilp")):
    rows = {p: read_csv(figure_data / f"sessions_{workload}_{p}.csv") for p in policies}
    ends = {p: sum(max((float(r["run_end_s"]) for r in rs if r["stage"] == st), default=0.0)
                   for st in ("expert", "aggregator")) for p, rs in rows.items()}
    fig, axes = plt.subplots(len(policies), 1, figsize=(10, 2.3 * len(policies)), squeeze=False)
    for ax, p in zip(axes[:, 0], policies):
        arm = "baseline: aggregator always" if p == "round_robin" else "MOSAIC: tau=2/3"
        timeline(rows[p], f"{workload}, {p} ({arm}, seed 0): {ends[p]:.0f} s end to end", ax=ax,
                 xmax=max(ends.values()) * 1.02, n_workers=4)
    fig.tight_layout()
    return fig


def speedups_figure(table_rows: list[dict[str, str]]):
    """Simulated stage speedups (mean ± std over seeds) next to the paper's, per workload."""
    workloads = list(dict.fromkeys(r["workload"] for r in table_rows))
    cell = {(r["workload"], r["metric"]): r for r in table_rows}
    fig, axes = plt.subplots(1, len(SPEEDUPS), figsize=(4 * len(SPEEDUPS), 3.2), sharey=True)
    x = range(len(workloads))
    for ax, m in zip(axes, SPEEDUPS):
        sim = [float(cell[(w, m)]["simulated"]) if (w, m) in cell else 0 for w in workloads]
        err = [float(cell[(w, m)]["simulated_std"]) if (w, m) in cell else 0 for w in workloads]
        paper = [float(cell[(w, m)]["paper"]) if (w, m) in cell and cell[(w, m)]["paper"] else 0 for w in workloads]
        ax.bar([i - 0.2 for i in x], sim, 0.4, yerr=err, capsize=3, label="simulated")
        ax.bar([i + 0.2 for i in x], paper, 0.4, label="paper", color="grey")
        ax.axhline(1, color="k", linewidth=0.6)
        ax.set_xticks(list(x), workloads, rotation=20, fontsize=8)
        ax.set_title(m.replace("_tau067", " (tau=2/3)").replace("_", " "))
    axes[0].set_ylabel("speedup vs round-robin (x)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def tau_figure(tau_rows: list[dict[str, str]], table_rows: list[dict[str, str]]):
    """Skip rate and accuracy change as the agreement threshold tau varies; paper points marked."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.4))
    by = defaultdict(list)
    for r in tau_rows:
        by[r["workload"]].append((float(r["tau"]), float(r["skip_pct"]), float(r["acc_delta_pp"])))
    paper = {(r["workload"], r["metric"]): r["paper"] for r in table_rows}
    for i, (wl, pts) in enumerate(sorted(by.items())):
        pts.sort()
        colour = plt.get_cmap("tab10")(i)
        a1.step([p[0] for p in pts], [p[1] for p in pts], where="post", label=wl, color=colour)
        a2.step([p[0] for p in pts], [p[2] for p in pts], where="post", label=wl, color=colour)
        for tau, key in ((1.0, "tau1"), (2 / 3, "tau067")):
            if paper.get((wl, f"skip_{key}")):
                a1.plot(tau, float(paper[(wl, f"skip_{key}")]), "x", color=colour)
                a2.plot(tau, float(paper[(wl, f"acc_delta_{key}")]), "x", color=colour)
    a1.set(xlabel="tau", ylabel="aggregator skipped (%)", title="skip rate (x = paper)")
    a2.set(xlabel="tau", ylabel="accuracy change vs always (pp)", title="accuracy change (x = paper)")
    a2.axhline(0, color="k", linewidth=0.6)
    a1.legend(fontsize=8)
    fig.tight_layout()
    return fig


def lengths_figure(length_rows: list[dict[str, str]], stage: str = "expert"):
    """Output-length CDF per model (from percentiles), one panel per workload."""
    workloads = list(dict.fromkeys(r["workload"] for r in length_rows))
    fig, axes = panel_grid(len(workloads), (3.8, 3.0))
    for ax, wl in zip(axes, workloads):
        curves = defaultdict(list)
        for r in length_rows:
            if r["workload"] == wl and r["stage"] == stage:
                curves[(r["model"], float(r["mean"]))].append((float(r["output_tokens"]), int(r["percentile"])))
        for (model, mean), pts in sorted(curves.items(), key=lambda kv: -kv[0][1]):
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] / 100 for p in pts], label=f"{model} (mean {mean:.0f})")
        ax.set_xscale("log")
        ax.set(xlabel="output tokens", title=wl)
        ax.legend(fontsize=6)
    for ax in axes[::3]:
        ax.set_ylabel(f"CDF ({stage} requests)")
    fig.tight_layout()
    return fig


def idle_figure(idle_rows: list[dict[str, str]]):
    """Share of GPU time left idle, per policy and workload (mean over seeds)."""
    acc = defaultdict(list)
    for r in idle_rows:
        acc[(r["workload"], r["scheduler"])].append(float(r["idle_fraction"]))
    workloads = sorted({w for w, _ in acc})
    policies = sorted({p for _, p in acc}, key=lambda p: (p != "ilp", p))
    fig, ax = plt.subplots(figsize=(8, 3.2))
    width = 0.8 / len(policies)
    for j, p in enumerate(policies):
        vals = [100 * sum(acc[(w, p)]) / len(acc[(w, p)]) if acc[(w, p)] else 0 for w in workloads]
        ax.bar([i + j * width for i in range(len(workloads))], vals, width, label=p)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(workloads))], workloads)
    ax.set_ylabel("GPU time idle (%)")
    ax.set_title("expert stage: GPU time idle per policy (mean over seeds)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _num(v: str) -> float | None:
    return float(v) if v not in ("", None) else None


def breakdown_figure(rows: list[dict[str, str]], workload: str = "mmlu_pro"):
    """Fig. 3a: per GPU, the expert stage split into load / generate / idle, one panel per policy."""
    if not any(r["workload"] == workload for r in rows) and rows:
        workload = rows[0]["workload"]   # a sweep without MMLU-Pro: its first workload
    rows = [r for r in rows if r["workload"] == workload]
    policies = list(dict.fromkeys(r["scheduler"] for r in rows))
    fig, axes = plt.subplots(1, max(1, len(policies)), figsize=(5 * max(1, len(policies)), 2.8), sharex=True,
                             squeeze=False)
    parts = (("load_s", "load", "tab:orange"), ("generate_s", "generate", "tab:blue"), ("idle_s", "idle", "lightgrey"))
    for ax, pol in zip(axes[0], policies):
        mine = sorted((r for r in rows if r["scheduler"] == pol), key=lambda r: int(r["worker"]))
        left = [0.0] * len(mine)
        for key, label, colour in parts:
            vals = [float(r[key]) for r in mine]
            ax.barh([f"GPU {r['worker']}\n{r['models']}" if len(r["models"]) < 24 else f"GPU {r['worker']}"
                     for r in mine], vals, left=left, color=colour, label=label)
            left = [a + b for a, b in zip(left, vals)]
        ax.invert_yaxis()
        ax.tick_params(axis="y", labelsize=7)
        ax.set(xlabel="time (s)", title=f"{workload}, {pol} (seed 0)")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def shard_figure(rows: list[dict[str, str]], marks: tuple[int, int] = (137, 239)):
    """Fig. 3b: output tokens/s of one engine against the number of prompts it serves, per model."""
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    by = defaultdict(list)
    for r in rows:
        by[(r["model"], r["kind"])].append((int(r["shard_size"]), float(r["tokens_per_s"])))
    for (model, kind), pts in sorted(by.items()):
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-" if kind == "reasoning" else "s--", label=model, ms=3)
    ax.axvspan(*marks, color="k", alpha=0.08, label=f"{marks[0]}-{marks[1]} prompts (paper)")
    ax.set_xscale("log")
    ax.set(xlabel="prompts per shard", ylabel="output tokens / s", title="throughput vs shard size (one A100)")
    ax.legend(fontsize=7, ncol=2, title="solid, circles: reasoning models; dashed, squares: instruct",
              title_fontsize=7)
    fig.tight_layout()
    return fig


def decomposition_figure(rows: list[dict[str, str]]):
    """Fig. 6: stacked expert + aggregator stage walls, baseline vs MOSAIC, ours beside the paper's."""
    workloads = [w for w in dict.fromkeys(r["workload"] for r in rows)]
    cell = {(r["workload"], r["arm"]): r for r in rows}
    fig, axes = panel_grid(len(workloads), (3.4, 2.9))
    for ax, wl in zip(axes, workloads):
        labels, expert, agg = [], [], []
        for arm in ("baseline", "mosaic"):
            r = cell.get((wl, arm))
            if r is None:
                continue
            labels.append(f"{arm}\nours")
            expert.append(float(r["expert_s"]))
            agg.append(float(r["aggregator_s"]))
            if _num(r["paper_expert_s"]) is not None:
                labels.append(f"{arm}\npaper")
                expert.append(float(r["paper_expert_s"]))
                agg.append(float(r["paper_aggregator_s"]))
        x = range(len(labels))
        ax.bar(x, expert, color="tab:blue", label="expert stage")
        ax.bar(x, agg, bottom=expert, color="tab:orange", label="aggregator stage")
        ax.set_xticks(list(x), labels, fontsize=7)
        ax.set_title(wl, fontsize=9)
    for ax in axes[::3]:
        ax.set_ylabel("wall time (s)")
    figure_legend(fig, axes, "Fig. 6, end to end: RR + always-aggregate vs ILP (K=2) + tau=2/3")
    return fig


def buckets_figure(rows: list[dict[str, str]], ecdf: list[dict[str, str]], workload: str = "mmlu_pro"):
    """Fig. 7: tokens per question by agreement bucket (ours vs paper) and their ECDFs."""
    rows = [r for r in rows if r["workload"] == workload]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.4))
    buckets = [r["bucket"] for r in rows]
    x = range(len(buckets))
    a1.bar([i - 0.2 for i in x], [float(r["mean_tokens"]) for r in rows], 0.4, label="ours")
    if any(_num(r["paper_mean_tokens"]) for r in rows):
        a1.bar([i + 0.2 for i in x], [_num(r["paper_mean_tokens"]) or 0 for r in rows], 0.4, color="grey", label="paper")
    a1.set_xticks(list(x), [f"{r['bucket']}\n{float(r['share_pct']):.0f}%" + (
        f" | {float(r['paper_share_pct']):.0f}%" if _num(r["paper_share_pct"]) else "") for r in rows], fontsize=8)
    rho = rows[0]["spearman_rho"] if rows else ""
    a1.set(ylabel="output tokens per expert answer", title=f"{workload}: mean by bucket (rho = {float(rho):.2f})"
           if rho else workload)
    a1.legend(fontsize=7)
    for b in buckets:
        pts = sorted((float(r["output_tokens"]), int(r["percentile"])) for r in ecdf
                     if r["workload"] == workload and r["bucket"] == b)
        a2.plot([p[0] for p in pts], [p[1] / 100 for p in pts], label=b)
    a2.set_xscale("log")
    a2.set(xlabel="output tokens per expert answer", ylabel="ECDF", title="per-question length by bucket")
    a2.legend(fontsize=7)
    fig.tight_layout()
    return fig


def slots_figure(rows: list[dict[str, str]]):
    """Table 3: expert slots per model, ours (each routing option) vs the paper's, seed 0."""
    workloads = list(dict.fromkeys(r["workload"] for r in rows))
    routings = list(dict.fromkeys(r["routing"] for r in rows))
    fig, axes = panel_grid(len(workloads), (4.2, 3.2))
    for ax, wl in zip(axes, workloads):
        mine = [r for r in rows if r["workload"] == wl]
        models = list(dict.fromkeys(r["model"] for r in mine))
        cell = {(r["model"], r["routing"]): r for r in mine}
        width = 0.8 / (len(routings) + 1)
        for j, routing in enumerate(routings):
            ax.bar([i + j * width for i in range(len(models))],
                   [float(cell[(m, routing)]["slots"]) if (m, routing) in cell else 0 for m in models], width,
                   label=f"ours ({routing})")
        paper = [next((_num(r["paper_slots"]) or 0 for r in mine if r["model"] == m), 0) for m in models]
        ax.bar([i + len(routings) * width for i in range(len(models))], paper, width, color="grey", label="paper")
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(models))], models, fontsize=7, rotation=20)
        ax.set_title(wl, fontsize=9)
    for ax in axes[::3]:
        ax.set_ylabel("expert slots (seed 0)")
    figure_legend(fig, axes, "Table 3: expert slots per model")
    return fig


def seed_walls_figure(rows: list[dict[str, str]]):
    """Table 4: MOSAIC expert-stage wall per seed, ours vs the paper's, one panel per workload."""
    workloads = list(dict.fromkeys(r["workload"] for r in rows))
    fig, axes = panel_grid(len(workloads), (3.0, 2.5))
    for ax, wl in zip(axes, workloads):
        mine = [r for r in rows if r["workload"] == wl]
        x = range(len(mine))
        ax.bar([i - 0.2 for i in x], [float(r["expert_stage_s"]) for r in mine], 0.4, label="ours")
        paper = [_num(r["paper_expert_stage_s"]) for r in mine]
        if any(v is not None for v in paper):
            ax.bar([i + 0.2 for i in x], [v or 0 for v in paper], 0.4, color="grey", label="paper")
        ax.set_xticks(list(x), [f"seed {r['seed']}" for r in mine], fontsize=8)
        ax.set_title(wl, fontsize=9)
    for ax in axes[::3]:
        ax.set_ylabel("expert stage (s)")
    figure_legend(fig, axes, "Table 4: MOSAIC's expert-stage wall per seed")
    return fig


def _rows(path: Path) -> list[dict[str, str]]:
    """A table every figure set needs: one without rows (an interrupted collect) would draw an
    empty figure and say nothing."""
    rows = read_csv(path)
    if not rows:
        raise ConfigError(f"{path} has no rows; regenerate it with python experiments/collect.py "
                         "(or experiments/reproduce.py)")
    return rows


def all_figures(results: Path) -> dict[str, Any]:
    """Every paper figure from the files in results/; returns name -> matplotlib figure. A figure
    whose data file is missing (e.g. Fig. 3b before experiments/shard_throughput.py ran) is skipped."""
    data = results / "figure_data"
    # The paper's experiment only; variants are in the table.
    table = [r for r in _rows(results / "paper_table.csv") if r.get("variant", "main") == "main"]
    optional = {"fig3a_breakdown": (breakdown_figure, "fig3a_breakdown.csv"),
                "fig3b_shard_throughput": (shard_figure, "fig3b_shard_throughput.csv"),
                "fig6_decomposition": (decomposition_figure, "fig6_decomposition.csv"),
                "table3_slots": (slots_figure, "table3_slots.csv"),
                "table4_seed_walls": (seed_walls_figure, "table4_seed_walls.csv")}
    figs = {}
    for name, (draw, file) in optional.items():
        rows = read_csv(data / file) if (data / file).exists() else []
        if rows:
            figs[name] = draw(rows)
    if (data / "fig7_buckets.csv").exists():
        buckets, ecdf = read_csv(data / "fig7_buckets.csv"), read_csv(data / "fig7_ecdf.csv")
        for wl in dict.fromkeys(r["workload"] for r in buckets):
            figs[f"fig7_buckets_{wl}"] = buckets_figure(buckets, ecdf, wl)
    figs |= {"speedups": speedups_figure(table),
            "tau_sweep": tau_figure(_rows(data / "tau_sweep.csv"), table),
            "output_lengths": lengths_figure(_rows(data / "output_lengths.csv")),
            "idle_fraction": idle_figure(_rows(results / "idle_fraction.csv"))}
    for path in sorted(data.glob("sessions_*_ilp.csv")):
        wl = path.stem[len("sessions_"):-len("_ilp")]
        figs[f"timeline_{wl}"] = timelines_figure(data, wl)
    return figs
