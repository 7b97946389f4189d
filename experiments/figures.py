"""Regenerate every figure in results/figures/ from the files in results/ (no simulation).

    python experiments/figures.py [--results results] [--format png,pdf]
"""
import sys
from pathlib import Path

from mosaic.analysis.figures import FORMATS, write_figures
from mosaic.core.arguments import ArgumentParser

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = ArgumentParser(description=__doc__)
    ap.add_argument("--results", type=Path, default=ROOT / "results")
    ap.add_argument("--format", default="png", help="comma-separated: png, pdf, svg (vector copies for a paper)")
    args = ap.parse_args()
    formats = [f for f in args.format.split(",") if f]
    if not formats or any(f not in FORMATS for f in formats):
        ap.error(f"--format {args.format}: give one or more of {', '.join(FORMATS)}, comma-separated")
    if not args.results.is_dir():
        ap.error(f"--results {args.results} is not a folder; give the results folder (experiments/collect.py "
                 "writes one)")
    try:
        write_figures(args.results, formats)
    except FileNotFoundError as e:
        print(f"error: {e.filename or e}: no such file; write the results first (python experiments/collect.py, "
              "or experiments/reproduce.py)", file=sys.stderr)
        sys.exit(2)
    except KeyError as e:   # a table of another shape than collect.py writes
        print(f"error: a table under {args.results} has no column {e}; regenerate it with "
              "python experiments/collect.py", file=sys.stderr)
        sys.exit(2)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
