"""Collect a sweep into results/: the paper table, and the data the figures are drawn from.

    python experiments/collect.py [--sweep multirun/paper] [--out results]
"""
import argparse
import csv
import shutil
import sys
from pathlib import Path

from mosaic import report

ROOT = Path(__file__).resolve().parents[1]
SWEEP_COMMAND = "python experiments/reproduce.py"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sweep", type=Path, default=ROOT / "multirun" / "paper")
    ap.add_argument("--out", type=Path, default=ROOT / "results")
    args = ap.parse_args()
    try:
        runs = report.load_runs(args.sweep)
    except FileNotFoundError as e:
        sys.exit(f"error: {e}")
    out = args.out
    rows = report.paper_table(runs)
    report.write_csv(out / "paper_table.csv", rows, report.COLUMNS)
    (out / "paper_table.md").write_text(report.render_markdown(rows, SWEEP_COMMAND))
    flat = [{k: v for k, v in r.items() if not isinstance(v, (dict, list)) and not k.startswith("_")}
            | {"aggregation": (r.get("aggregation") or {}).get("name")} for r in runs]
    report.write_csv(out / "runs.csv", flat)
    report.write_csv(out / "idle_fraction.csv", report.idle_fractions(runs))

    # Figure data from seed 0: timelines (ilp vs round_robin, tau=1), output lengths, tau sweep.
    figdata = out / "figure_data"
    if figdata.exists():
        shutil.rmtree(figdata)
    figdata.mkdir(parents=True)
    taus, lengths = [], []
    for r in runs:
        agg = (r.get("aggregation") or {}).get("name")
        d = Path(r["_dir"])
        if r["seed"] != 0:
            continue
        if agg == "tau1" and r["scheduler"] in ("ilp", "round_robin"):
            shutil.copy(d / "sessions.csv", figdata / f"sessions_{r['workload']}_{r['scheduler']}.csv")
        if agg == "always" and r["scheduler"] == "ilp":
            taus += report.tau_sweep(d / "queries.csv", r["workload"], 0, [i / 30 for i in range(1, 31)])
            with open(d / "trace.csv") as f:
                lengths += report.length_percentiles(r["workload"], csv.DictReader(f))
    report.write_csv(figdata / "tau_sweep.csv", taus)
    report.write_csv(figdata / "output_lengths.csv", lengths)
    print(report.render_markdown(rows, SWEEP_COMMAND))
    print(f"wrote {out}/paper_table.csv, paper_table.md, runs.csv, idle_fraction.csv, figure_data/")


if __name__ == "__main__":
    main()
