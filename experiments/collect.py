"""Collect a sweep into results/: the paper table, the paper's figures' and tables' data, a run table.

    python experiments/collect.py [--sweep multirun/paper] [--out results]

Every sweep folder under --sweep is read; runs are told apart by the `settings` in their
summary.json (see mosaic/analysis/paper_table.py). A run that failed (error.json) or never finished
(no summary.json) is skipped, one line each on stderr. Logic: mosaic/analysis/collect.py.
"""
import sys
from pathlib import Path

from mosaic.analysis.collect import collect
from mosaic.core.arguments import ArgumentParser
from mosaic.core.arguments import out_arg

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = ArgumentParser(description=__doc__)
    ap.add_argument("--sweep", type=Path, default=ROOT / "multirun" / "paper")
    ap.add_argument("--out", type=Path, default=ROOT / "results")
    args = ap.parse_args()
    out_arg(ap, args.out)   # before the work, not after it
    try:
        print(collect(args.sweep, args.out))
    except (FileNotFoundError, ValueError) as e:   # nothing to collect, or runs that would collide
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(f"wrote {args.out}/paper_table.csv, paper_table.md, paper_artefacts.md, runs.csv, idle_fraction.csv, "
          "figure_data/")


if __name__ == "__main__":
    main()
