"""Compare scheduling policies on the three synthetic dataset presets, side by side in one run.

    python experiments/compare_policies.py            # 3 presets x 5 policies x seeds 0,1,2
    python experiments/compare_policies.py --seeds 0  # quicker

Prints a table and writes results/policies.csv and results/policies.md. Every run uses the same
Hydra config as experiments/run.py (conf/), only with group overrides. Logic: mosaic/analysis/policies.py.
"""
import argparse
from pathlib import Path

from mosaic.analysis.policies import write

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", type=Path, default=ROOT / "results")
    args = ap.parse_args()
    print(write(args.out, args.seeds))


if __name__ == "__main__":
    main()
