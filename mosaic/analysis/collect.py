"""Collect a sweep into a results folder: the paper table, the paper's figures' and tables' data,
a run table (`python experiments/collect.py [--sweep multirun/paper] [--out results]` runs `collect`).

Every sweep folder under the sweep root is read; runs are told apart by the `settings` in their
summary.json (see mosaic/analysis/paper_table.py). Figure data come from seed 0 of the paper's setting.
A run directory holding error.json (a failed run: mosaic/core/rundir.py), or a job directory without a
summary.json (a run that never finished), is skipped, and said so on stderr, one line per run.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

from mosaic.analysis import paper_table as report
from mosaic.analysis.runs import finished_runs, flatten, runs_table
from mosaic.core.tables import read_csv, write_csv
from mosaic.core.rundir import one_line, read_run_dir
from mosaic.core.rundir import graph_run

SWEEP_COMMAND = "python experiments/reproduce.py"


# A run's tables the collector reads (figure data, tau sweep, output lengths).
COLLECTED_TABLES = ("sessions.csv", "trace.csv", "queries.csv")


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
            lengths += report.length_percentiles(r["workload"], read_csv(d / "trace.csv"))
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


# The paper's cluster (DESIGN.md): the table and figures compare runs on it only.
PAPER_WORKERS = 4


def paper_setting(runs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """The runs on the paper's cluster, and the others with why they are left out: a sweep of
    another cluster size is not scored against the paper."""
    keep, off = [], []
    for r in runs:
        n = len(r.get("workers") or [])
        topology = r.get("topology") or {}
        if graph_run(r):   # the paper's tables are of the flat pipeline, offline
            off.append((r["_dir"], f"an agent-graph or online run (topology {topology.get('name')}); "
                                   "experiments/faster_moa.py tables those"))
        elif n != PAPER_WORKERS:
            off.append((r["_dir"], f"a cluster of {n} workers, not the paper's {PAPER_WORKERS}"))
        elif r.get("n_failed_requests"):   # its stage walls are not those of the workload it names
            total = (r.get("n_expert_requests") or 0) + (r.get("n_aggregator_requests") or 0)
            off.append((r["_dir"], f"{r['n_failed_requests']} of {total} requests failed "
                                   f"(first: {one_line(str(r.get('first_request_error') or ''), 120)})"))
        else:
            keep.append(r)
    return keep, off


def check_unique(runs: list[dict[str, Any]]) -> None:
    """Two runs the tables cannot tell apart (same variant, workload, policy, aggregation, seed)
    would silently replace each other: a ValueError naming both and how their configs differ."""
    seen: dict[tuple, dict[str, Any]] = {}
    for r in runs:
        key = (report.variant_of(r), r["workload"], r["scheduler"], (r.get("aggregation") or {}).get("name"), r["seed"])
        if key in seen:
            a = flatten((seen[key].get("provenance") or {}).get("config") or {})
            b = flatten((r.get("provenance") or {}).get("config") or {})
            diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            if not diff and a:
                raise ValueError(f"{seen[key]['_dir']} and {r['_dir']} hold the same run twice (the same config: a "
                                 "copy?); keep one of them")
            raise ValueError(f"{seen[key]['_dir']} and {r['_dir']} are the same run to the tables ({r['scheduler']} on "
                             f"{r['workload']}, seed {r['seed']}) but differ in "
                             f"{', '.join(diff[:6]) if diff else 'settings the summary does not record'}; "
                             "collect one setting per sweep folder")
        seen[key] = r


def collect(sweep: Path, out: Path) -> str:
    """Read every finished run under `sweep` and write the tables into `out`; returns the paper
    table's markdown. Failed and unfinished runs, and runs not on the paper's cluster, are skipped,
    with a line each on stderr. A sweep without a finished run is a FileNotFoundError; two runs the
    tables cannot tell apart, a ValueError."""
    if not Path(sweep).is_dir():
        raise FileNotFoundError(f"{sweep} is {'a file' if Path(sweep).exists() else 'not there'}: give the sweep's "
                                "folder (hydra.sweep.dir of the sweep), e.g. multirun/paper after "
                                "experiments/reproduce.py")
    runs, skipped = finished_runs(sweep)
    readable = []
    for r in runs:   # the tables the figures read, checked before any is drawn from
        try:
            read_run_dir(Path(r["_dir"]), COLLECTED_TABLES)
            readable.append(r)
        except (OSError, ValueError) as e:
            skipped.append((Path(r["_dir"]), one_line(e, 300)))
    runs = readable
    if skipped:
        print(f"skipped {len(skipped)} run(s) under {sweep} (failed, unfinished or damaged; not in the tables):",
              file=sys.stderr)
        for d, why in skipped:
            print(f"  {d}: {why}", file=sys.stderr)
    if not runs:
        raise FileNotFoundError(f"no summary.json under {sweep}: run the sweep first" if not skipped else
                                f"no finished run under {sweep}: all {len(skipped)} failed or did not finish")
    runs, off = paper_setting(runs)
    if off:
        print(f"left out {len(off)} run(s) not in the paper's setting:", file=sys.stderr)
        for d, why in off:
            print(f"  {d}: {why}", file=sys.stderr)
    if not runs:
        raise FileNotFoundError(f"no run under {sweep} is in the paper's setting ({PAPER_WORKERS} workers); "
                                "compare other sweeps with mosaic.analysis.load_runs")
    check_unique(runs)
    rows = report.paper_table(runs_table(runs))
    if not rows:   # the other tables are still written: runs.csv, figure data
        print(f"note: no run under {sweep} pairs MOSAIC (ilp) with its baseline (round_robin, aggregation=always) "
              f"for a workload and seed, so the paper table is empty; `mosaic runs {sweep}` tables any sweep",
              file=sys.stderr)
    write_csv(out / "paper_table.csv", rows, report.COLUMNS)
    backends = [r.get("backend") or "sim" for r in runs]
    (out / "paper_table.md").write_text(report.render_markdown(rows, SWEEP_COMMAND, backends))
    flat = [{k: v for k, v in r.items() if not isinstance(v, (dict, list)) and not k.startswith("_")}
            | {"aggregation": (r.get("aggregation") or {}).get("name"),
               "variant": report.variant_label(report.variant_of(r))} for r in runs]
    write_csv(out / "runs.csv", flat)
    write_csv(out / "idle_fraction.csv", report.idle_fractions(runs))
    tables = figure_data(runs, out / "figure_data")
    (out / "paper_artefacts.md").write_text(report.render_artefacts(tables, SWEEP_COMMAND))
    return report.render_markdown(rows, SWEEP_COMMAND, backends)
