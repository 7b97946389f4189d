"""Regenerate every figure in results/figures/ from the files in results/ (no simulation).

    python experiments/figures.py [--results results]
"""
import argparse
from pathlib import Path

import matplotlib.pyplot as plt

from mosaic.analysis.plots import all_figures

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=ROOT / "results")
    args = ap.parse_args()
    out = args.results / "figures"
    out.mkdir(parents=True, exist_ok=True)
    for name, fig in all_figures(args.results).items():
        fig.savefig(out / f"{name}.png", dpi=110)
        plt.close(fig)
        print(f"wrote {out / name}.png")


if __name__ == "__main__":
    main()
