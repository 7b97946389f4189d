"""Simulator fidelity: the same workload and plan on backend=sim (measured profiles) and on vLLM.

    python experiments/fidelity.py                       # workload=smoke, models=tiny, 2 CPU workers
    python experiments/fidelity.py scheduler=round_robin # any config override

Prints per-stage makespan error and per-request latency error, writes results/fidelity.md.
Method: mosaic/analysis/fidelity.py.
"""
import argparse
from pathlib import Path

from mosaic.analysis.fidelity import write

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. scheduler=round_robin")
    args = ap.parse_args()
    print(write(ROOT / "results", args.overrides), end="")


if __name__ == "__main__":
    main()
