"""Figures drawn from Traces only (never from plans or workloads)."""
from __future__ import annotations

from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # headless: figures are written to files
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from mosaic.trace import Trace  # noqa: E402


def timeline(stages: Sequence[Trace], title: str, ax=None, xmax: float | None = None):
    """Per-worker Gantt of consecutive stages: hatched = model load, solid = serving."""
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 0.6 + 0.5 * max(len(t.workers) for t in stages)))
    models = sorted({s.model for t in stages for s in t.sessions})
    colour = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(models)}
    offset = 0.0
    for t in stages:
        for s in t.sessions:
            y = s.worker
            ax.barh(y, s.load_end_s - s.load_start_s, left=offset + s.load_start_s, color=colour[s.model],
                    alpha=0.4, hatch="//", edgecolor="k", linewidth=0.3)
            ax.barh(y, s.run_end_s - s.run_start_s, left=offset + s.run_start_s, color=colour[s.model],
                    edgecolor="k", linewidth=0.3)
        offset += t.makespan_s
        ax.axvline(offset, color="k", linestyle=":", linewidth=0.8)
    n = max(len(t.workers) for t in stages)
    ax.set_yticks(range(n), [f"GPU {i}" for i in range(n)])
    ax.invert_yaxis()
    ax.set_xlabel("time (s)")
    ax.set_title(title)
    if xmax:
        ax.set_xlim(0, xmax)
    ax.legend(handles=[Patch(color=colour[m], label=m) for m in models], loc="lower right",
              fontsize=7, ncol=min(4, len(models)))
    return ax
