"""Figure files: every figure of results/figures/ from the files in results/ (no simulation), and
per-worker timelines of several policies on one workload (`experiments/figures.py`,
`experiments/plot_timeline.py`). The drawing itself is mosaic/analysis/plots.py."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # this module writes figure files, with or without a display
import matplotlib.pyplot as plt  # noqa: E402

from mosaic.analysis.plots import all_figures, session_rows, timeline  # noqa: E402
from mosaic.run.app import run  # noqa: E402
from mosaic.run.builder import compose  # noqa: E402
from mosaic.core.rundir import read_run_dir  # noqa: E402
from mosaic.run.timeline import run_title  # noqa: E402


FORMATS = ("png", "pdf", "svg")


def write_figures(results: Path, formats: Sequence[str] = ("png",)) -> list[Path]:
    """Draw every figure from the files under `results` into results/figures/, in each of
    `formats` (png, and pdf or svg for vector copies); returns the paths (each printed as it is
    written)."""
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ValueError(f"figure formats {bad or list(formats)}: choose among {', '.join(FORMATS)}")
    out = results / "figures"
    written = []
    with plt.rc_context({"figure.max_open_warning": 0}):   # every figure is drawn, then written and closed
        figures = all_figures(results)
    out.mkdir(parents=True, exist_ok=True)   # only now: results that draw nothing leave no empty folder
    for name, fig in figures.items():
        for fmt in formats:
            path = out / f"{name}.{fmt}"
            # No creation date and fixed SVG ids in vector files: regenerating gives the same bytes.
            with plt.rc_context({"svg.hashsalt": "mosaic"}):
                fig.savefig(path, dpi=110, metadata={"CreationDate": None} if fmt == "pdf" else
                            {"Date": None} if fmt == "svg" else None)
            print(f"wrote {path}")
            written.append(path)
        plt.close(fig)
    return written


def policy_timelines(policies: Sequence[str], workload: str, seed: int, out: Path) -> None:
    """Run `workload` once per policy (default config otherwise) and draw their per-worker
    timelines, one row per policy, on a shared time axis, into `out`."""
    cfgs = [compose([f"scheduler={pol}", f"workload={workload}", f"seed={seed}"]) for pol in policies]
    runs = [(pol, run(c)) for pol, c in zip(policies, cfgs)]
    xmax = max(o.summary["end_to_end_s"] for _, o in runs) * 1.02
    fig, axes = plt.subplots(len(runs), 1, figsize=(10, 2.2 * len(runs)), squeeze=False)
    for ax, (pol, o) in zip(axes[:, 0], runs):
        s = o.summary
        timeline(session_rows([o.result.expert.trace, o.result.aggregator.trace]),
                 f"{pol}: expert {s['expert_stage_s']:.0f} s + aggregator {s['aggregator_stage_s']:.0f} s "
                 f"= {s['end_to_end_s']:.0f} s", ax=ax, xmax=xmax, n_workers=len(s['workers']))
    cluster = cfgs[0].cluster
    fig.suptitle(f"{workload}, seed {seed}, {cluster.n_workers}x {cluster.device} (simulated)", fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")


def run_dir_timelines(run_dirs: Sequence[Path], out: Path) -> None:
    """Finished run folders (either backend), one row each on a shared time axis, from their own
    sessions.csv and summary.json."""
    read = [read_run_dir(d) for d in run_dirs]
    summaries = [s for s, _ in read]
    rows = [tables["sessions.csv"] for _, tables in read]
    # a flat run ends with its aggregator stage; an agent-graph run has one makespan
    xmax = max(s.get("end_to_end_s") or s["makespan_s"] for s in summaries) * 1.02
    fig, axes = plt.subplots(len(rows), 1, figsize=(10, 2.2 * len(rows)), squeeze=False)
    for ax, r, s in zip(axes[:, 0], rows, summaries):
        timeline(r, run_title(s), ax=ax, xmax=xmax, n_workers=len(s["workers"]))
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")
