"""A run's per-worker timeline (a Gantt chart: hatched = model load, solid = serving, a dashed
thick outline = a replica the runtime added mid-run, dotted line = the aggregator stage's start), drawn from a run's sessions (the rows of sessions.csv) and its
summary, so any finished run folder of either backend can be redrawn. An agent-graph or online run's
engines stay loaded for the whole run: there a pale bar is the engine loaded, and the solid spans
on it are when it held a request (from trace.csv):
python -m mosaic.run.timeline RUN_DIR [--pdf]  (writes RUN_DIR/timeline.png, and timeline.pdf with
--pdf). Every run writes timeline.png.

matplotlib's object-oriented API only (no pyplot): drawing a file never switches the backend of a
notebook that imported this, and matplotlib is imported only when a figure is drawn.
"""
from __future__ import annotations

import sys
import zlib
from pathlib import Path
from typing import Any, Iterable

from mosaic.core.arguments import ArgumentParser
from mosaic.core.rundir import folders_done, read_run_dir, run_dirs_of, write_atomic, write_error
from mosaic.core.rundir import graph_run

TIMELINE_FILE = "timeline.png"


def model_colours(models: Iterable[str], palette: int = 20) -> dict[str, int]:
    """A palette index per model that depends on its name only (crc32), so a model keeps its colour
    across runs and figures; a model whose index another in the same figure took moves to the next
    free one (in name order), while the palette has free ones."""
    out: dict[str, int] = {}
    for m in sorted(models):
        i = zlib.crc32(m.encode()) % palette
        for k in range(palette):
            if (i + k) % palette not in out.values():
                i = (i + k) % palette
                break
        out[m] = i
    return out


def busy_spans(requests: Iterable[dict[str, Any]]) -> dict[int, list[tuple[float, float]]]:
    """Per worker, when its engine held a served request (first step to last token), overlapping
    spans merged: an agent-graph run's activity (the rows of its trace.csv)."""
    spans: dict[int, list[tuple[float, float]]] = {}
    for r in requests:
        if r.get("status") == "served" and r.get("start_s") not in (None, "") and r.get("worker") not in (None, ""):
            spans.setdefault(int(r["worker"]), []).append((float(r["start_s"]), float(r["finish_s"])))
    out = {}
    for w, xs in spans.items():
        merged: list[list[float]] = []
        for a, b in sorted(xs):
            if merged and a <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        out[w] = [(a, b) for a, b in merged]
    return out


BAR = 0.8   # a worker's bar height (matplotlib's default)


def _spans(rows: list[dict[str, Any]]) -> list[tuple[float, float | None]]:
    """Each session row's bar: (y centre, height). A tensor-parallel session is one engine over
    several workers (a row per worker in sessions.csv): drawn once, as one bar over them where
    they are adjacent; its other rows get height None. Elsewhere, the worker's own bar."""
    groups: dict[tuple, list[int]] = {}
    for i, r in enumerate(rows):
        if int(float(r.get("tp_size") or 1)) > 1:
            groups.setdefault((r["index"], r["model"], r["run_start_s"], r["run_end_s"]), []).append(i)
    out: list[tuple[float, float | None]] = [(r["worker"], BAR) for r in rows]
    for members in groups.values():
        workers = sorted(rows[i]["worker"] for i in members)
        if len(workers) < 2 or workers != list(range(workers[0], workers[-1] + 1)):
            continue
        first = min(members, key=lambda i: rows[i]["worker"])
        for i in members:
            out[i] = (workers[0] + workers[-1]) / 2, (workers[-1] - workers[0]) + BAR if i == first else None
    return out


def draw(rows: Iterable[dict[str, Any]], title: str, ax, xmax: float | None = None, n_workers: int | None = None,
         activity: dict[int, list[tuple[float, float]]] | None = None):
    """Per-worker Gantt on `ax`. Stages follow one another; times in each row are relative to the
    start of its stage (as in sessions.csv). With `activity` (busy_spans), a session's serving bar
    is pale and its busy spans solid."""
    from matplotlib import colormaps
    from matplotlib.patches import Patch

    rows = [{k: (float(v) if k.endswith("_s") else v) for k, v in r.items()} for r in rows]
    for r in rows:
        r["worker"] = int(r["worker"])
    stages = list(dict.fromkeys(r["stage"] for r in rows))
    n = n_workers or (max(r["worker"] for r in rows) + 1 if rows else 1)
    models = sorted({r["model"] for r in rows})
    colour = {m: colormaps["tab20"](i) for m, i in model_colours(models).items()}
    offset = 0.0
    for stage in stages:
        mine = [r for r in rows if r["stage"] == stage]
        for r, (y, height) in zip(mine, _spans(mine)):
            if height is None:   # a worker of a tensor-parallel engine drawn with its first worker
                continue
            ax.barh(y, r["load_end_s"] - r["load_start_s"], height=height, left=offset + r["load_start_s"],
                    color=colour[r["model"]], alpha=0.4, hatch="//", edgecolor="k", linewidth=0.3)
            added = str(r.get("added", "")).lower() in ("true", "1")   # loaded by the runtime, not the plan
            ax.barh(y, r["run_end_s"] - r["run_start_s"], height=height, left=offset + r["run_start_s"],
                    color=colour[r["model"]], edgecolor="k", linewidth=1.5 if added else 0.3,
                    linestyle="--" if added else "-", alpha=0.3 if activity is not None else 1.0)
            if height > BAR:
                ax.text(offset + (r["run_start_s"] + r["run_end_s"]) / 2, y,
                        f"{r['model']}: one TP-{int(float(r['tp_size']))} engine",
                        ha="center", va="center", fontsize=7)
            for a, b in (activity or {}).get(r["worker"], []):
                a, b = max(a, r["run_start_s"]), min(b, r["run_end_s"])
                if b > a:
                    ax.barh(r["worker"], b - a, left=offset + a, color=colour[r["model"]], linewidth=0)
        if offset > 0:   # the stage that starts here, named at the boundary
            ax.text(offset, -0.6, f" {stage} stage", fontsize=7, va="bottom", ha="left")
        offset += max((r["run_end_s"] for r in mine), default=0.0)
        ax.axvline(offset, color="k", linestyle=":", linewidth=0.8)
    ax.set_yticks(range(n), [f"GPU {i}" for i in range(n)])
    ax.invert_yaxis()
    ax.set_xlabel("time (s)")
    ax.set_title(title, fontsize=9, pad=12)   # room for the stage names above the bars
    if xmax:
        ax.set_xlim(0, xmax)
    # Outside the axes, so it never covers a worker's bars; the hatch explained.
    handles = [Patch(color=colour[m], label=m) for m in models]
    handles.append(Patch(facecolor="white", edgecolor="k", hatch="//", linewidth=0.3, label="model load"))
    if activity is not None:
        handles.append(Patch(facecolor="grey", alpha=0.3, label="loaded, no request"))
    if any(str(r.get("added", "")).lower() in ("true", "1") for r in rows):
        handles.append(Patch(facecolor="white", edgecolor="k", linestyle="--", linewidth=1.5,
                             label="replica added mid-run"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=7, frameon=False)
    return ax


def run_title(summary: dict[str, Any]) -> str:
    config = (summary.get("provenance") or {}).get("config") or {}
    cluster = config.get("cluster") or {}
    n = len(summary.get("workers") or [])
    where = f"{n}x {cluster['device']}" if cluster.get("device") else f"{n} workers"
    # the costs are the profiles' device's, whatever the cluster is called (a CPU profile on A100s)
    profiles = (config.get("topology") or {}).get("profiles") or (config.get("workload") or {}).get("profiles")
    if profiles:
        where += f" (profiles {Path(str(profiles)).stem}" + (
            ", calibrated" if summary.get("profile_calibration") else "") + ")"
    topology = summary.get("topology") or {}
    if graph_run(summary):
        p50 = summary["query_latency_s"]["p50"]   # None: no query was answered
        what = "MoA pipeline" if topology.get("kind", "flat") == "flat" else f"{topology['name']} agent graphs"
        arrivals = summary.get("arrivals") or {}
        if arrivals.get("kind", "batch") != "batch":
            what += f" online ({arrivals['kind']}" + (f", {arrivals['rate']:g} q/s" if arrivals.get("rate") else "") + \
                f", runtime {summary.get('runtime', 'static')})"
        return (f"{what} on {summary['workload']} (seed {summary['seed']}), {where}, "
                f"backend {summary['backend']}: {summary['n_queries']} queries, makespan "
                f"{summary['makespan_s']:.0f} s, query latency p50 "
                + ("- (no query answered)" if p50 is None else f"{p50:.1f} s"))
    return (f"{summary['scheduler']} on {summary['workload']} (seed {summary['seed']}), {where}, "
            f"backend {summary['backend']}"
            + (f", runtime {summary['runtime']}" if summary.get("runtime", "static") != "static" else "")
            + f": expert {summary['expert_stage_s']:.0f} s + aggregator "
            f"{summary['aggregator_stage_s']:.0f} s = {summary['end_to_end_s']:.0f} s")


def figure(rows: list[dict[str, Any]], summary: dict[str, Any], activity=None):
    from matplotlib.figure import Figure

    n = len(summary.get("workers") or []) or None
    fig = Figure(figsize=(10, 1.0 + 0.45 * (n or 4)))
    title = run_title(summary)
    if len(title) > 110:   # wider than the figure: the run's results on a line of their own
        title = title.replace(": ", ":\n", 1)
    draw(rows, title, fig.add_subplot(), n_workers=n, activity=activity)
    fig.tight_layout()
    return fig


def write(directory: Path, rows: list[dict[str, Any]], summary: dict[str, Any], pdf: bool = False,
          activity=None) -> list[Path]:
    fig = figure(rows, summary, activity)
    out = [Path(directory) / TIMELINE_FILE] + ([Path(directory) / "timeline.pdf"] if pdf else [])
    for p in out:
        try:
            write_atomic(p, lambda f, fmt=p.suffix[1:]: fig.savefig(f, dpi=110, format=fmt), binary=True)
        except Exception as e:
            e.mosaic_path = p   # which file failed: the PNG may be written and only the PDF not
            raise
    return out


def from_run_dir(directory: Path, pdf: bool = False) -> list[Path]:
    summary, tables = read_run_dir(directory)
    activity = None
    if graph_run(summary):
        activity = busy_spans(read_run_dir(directory, ("trace.csv",))[1]["trace.csv"])
    return write(directory, tables["sessions.csv"], summary, pdf, activity)


def main(argv: list[str] | None = None) -> int:
    ap = ArgumentParser(description="Draw RUN_DIR/timeline.png from a run folder's files; a sweep's folder: "
                                    "each finished run's.")
    ap.add_argument("run_dirs", nargs="+", type=Path)
    ap.add_argument("--pdf", action="store_true", help="also timeline.pdf (vector)")
    args = ap.parse_args(argv)
    dirs, skipped = run_dirs_of(args.run_dirs)
    if skipped:
        print(f"left out {skipped} run(s) of the sweep that failed or did not finish", file=sys.stderr)
    failed = 0
    for d in dirs:   # a broken folder is said and skipped; the others are still drawn
        try:
            for p in from_run_dir(d, args.pdf):
                print(f"wrote {p}")
        except (FileNotFoundError, KeyError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            failed += 1
        except Exception as e:  # noqa: BLE001 -- only a failed write is said in one line
            why = write_error(getattr(e, "mosaic_path", d / TIMELINE_FILE), e)
            if why is None:
                raise
            print(f"error: {why}", file=sys.stderr)
            failed += 1
    return folders_done(failed, len(dirs))


if __name__ == "__main__":
    sys.exit(main())
