"""Collect a sweep into a results folder: the paper table, the paper's figures' and tables' data,
a run table (`python experiments/collect.py [--sweep multirun/paper] [--out results]` runs `collect`).

Every sweep folder under the sweep root is read; runs are told apart by the `settings` in their
summary.json (see mosaic/analysis/paper_table.py). Figure data come from seed 0 of the paper's setting.
A run directory holding error.json (a failed run: mosaic/run/jobs.py), or a job directory without a
summary.json (a run that never finished), is skipped, and said so on stderr, one line per run.
"""
from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from mosaic.analysis import paper_table as report
from mosaic.core.tables import write_csv
from mosaic.run.jobs import ERROR_FILE, SUMMARY_FILE, one_line

SWEEP_COMMAND = "python experiments/reproduce.py"


def figure_data(runs: list[dict], figdata: Path) -> dict[str, list[dict]]:
    """Write figure_data/*.csv; returns the artefact tables for the markdown summary."""
    for stale in figdata.glob("sessions_*.csv"):
        stale.unlink()
    figdata.mkdir(parents=True, exist_ok=True)
    main = [r for r in runs if not report.variant_of(r)]
    taus, lengths, breakdown, buckets, ecdf = [], [], [], [], []
    for r in main:
        agg, d = (r.get("aggregation") or {}).get("name"), Path(r["_dir"])
        if r["seed"] != 0:
            continue
        if (r["scheduler"], agg) in (("ilp", "tau067"), ("round_robin", "always")):   # MOSAIC, baseline
            shutil.copy(d / "sessions.csv", figdata / f"sessions_{r['workload']}_{r['scheduler']}.csv")
        if agg == "always" and r["scheduler"] == "ilp":
            taus += report.tau_sweep(d / "queries.csv", r["workload"], 0, [i / 30 for i in range(1, 31)])
            with open(d / "trace.csv") as f:
                lengths += report.length_percentiles(r["workload"], csv.DictReader(f))
            # Expert outputs and agreement do not depend on the scheduler or tau: one run per workload.
            b, e = report.agreement_buckets(r)
            buckets, ecdf = buckets + b, ecdf + e
    for wl in sorted({r["workload"] for r in main}):
        for policy in ("round_robin", "data_parallel"):   # Fig. 3a: expert stage, any tau
            run = report.find_run(main, wl, policy, 0)
            if run:
                breakdown += report.stage_breakdown(run)
    tables = {"fig3a_breakdown": breakdown, "fig6_decomposition": report.stage_decomposition(runs),
              "fig7_buckets": buckets, "table3_slots": report.slot_table(runs),
              "table4_seed_walls": report.seed_walls(runs), "diagnostics": report.stage_diagnostics(runs)}
    for name, rows in {**tables, "fig7_ecdf": ecdf, "tau_sweep": taus, "output_lengths": lengths}.items():
        write_csv(figdata / f"{name}.csv", rows)
    return tables


def load_runs(sweep: Path) -> tuple[list[dict[str, Any]], list[tuple[Path, str]]]:
    """The finished runs under `sweep` (each summary.json, with its directory under `_dir`) and the
    skipped ones, each with why: it recorded a failure (error.json, even beside a summary.json:
    its outputs are kept for inspection only), its summary.json is unreadable, or it is a job
    directory (.hydra/) without a summary.json."""
    sweep = Path(sweep)
    dirs = {p.parent for name in (SUMMARY_FILE, ERROR_FILE) for p in sweep.rglob(name)}
    dirs |= {p.parent for p in sweep.rglob(".hydra") if p.is_dir()}
    runs, skipped = [], []
    for d in sorted(dirs):
        if (d / ERROR_FILE).exists():
            try:
                rec = json.loads((d / ERROR_FILE).read_text())
                why = f"failed (exit {rec.get('exit_code')}, stage {rec.get('stage') or '?'}): {rec.get('error')}"
            except (OSError, ValueError) as e:
                why = f"failed (unreadable error.json: {e})"
        elif not (d / SUMMARY_FILE).exists():
            why = "no summary.json (the run did not finish)"
        else:
            try:
                s = json.loads((d / SUMMARY_FILE).read_text())
            except (OSError, ValueError) as e:
                skipped.append((d, f"unreadable summary.json ({e})"))
                continue
            s["_dir"] = str(d)
            runs.append(s)
            continue
        skipped.append((d, one_line(why, 300)))
    return runs, skipped


def collect(sweep: Path, out: Path) -> str:
    """Read every finished run under `sweep` and write the tables into `out`; returns the paper
    table's markdown. Failed and unfinished runs are skipped, with a line each on stderr. A sweep
    without a finished run is a FileNotFoundError."""
    runs, skipped = load_runs(sweep)
    if skipped:
        print(f"skipped {len(skipped)} run(s) under {sweep} (failed or unfinished; not in the tables):",
              file=sys.stderr)
        for d, why in skipped:
            print(f"  {d}: {why}", file=sys.stderr)
    if not runs:
        raise FileNotFoundError(f"no summary.json under {sweep}: run the sweep first" if not skipped else
                                f"no finished run under {sweep}: all {len(skipped)} failed or did not finish")
    rows = report.paper_table(runs)
    write_csv(out / "paper_table.csv", rows, report.COLUMNS)
    (out / "paper_table.md").write_text(report.render_markdown(rows, SWEEP_COMMAND))
    flat = [{k: v for k, v in r.items() if not isinstance(v, (dict, list)) and not k.startswith("_")}
            | {"aggregation": (r.get("aggregation") or {}).get("name"),
               "variant": report.variant_label(report.variant_of(r))} for r in runs]
    write_csv(out / "runs.csv", flat)
    write_csv(out / "idle_fraction.csv", report.idle_fractions(runs))
    tables = figure_data(runs, out / "figure_data")
    (out / "paper_artefacts.md").write_text(report.render_artefacts(tables, SWEEP_COMMAND))
    return report.render_markdown(rows, SWEEP_COMMAND)
