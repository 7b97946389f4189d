"""Regenerate every figure in results/figures/ from the files in results/ (no simulation).

    python experiments/figures.py [--results results] [--format png,pdf]
"""
import argparse
import sys
from pathlib import Path

from mosaic.analysis.figures import write_figures

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=ROOT / "results")
    ap.add_argument("--format", default="png", help="comma-separated: png, pdf, svg (vector copies for a paper)")
    args = ap.parse_args()
    try:
        write_figures(args.results, [f for f in args.format.split(",") if f])
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
