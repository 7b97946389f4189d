"""Regenerate every figure in results/figures/ from the files in results/ (no simulation).

    python experiments/figures.py [--results results]
"""
import argparse
from pathlib import Path

from mosaic.analysis.figures import write_figures

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=ROOT / "results")
    args = ap.parse_args()
    write_figures(args.results)


if __name__ == "__main__":
    main()
