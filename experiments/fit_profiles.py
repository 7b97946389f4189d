"""Fit output-length shapes to real model outputs and write mosaic/profiles/data/paper_a100.yaml.

    python experiments/fit_profiles.py [--data ../shared/data] [--out mosaic/profiles/data/paper_a100.yaml]

Then fits every model's session-time regression into the file (experiments/fit_session_costs.py's
job). Method and sources: mosaic/fitting/lengths.py.
"""
import argparse
from pathlib import Path

from mosaic.fitting.lengths import DEFAULT_DATA, DEFAULT_OUT, fit_profiles
from mosaic.run.jobs import out_arg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    out_arg(ap, args.out, file=True)   # before the work, not after it
    fit_profiles(args.data, args.out)


if __name__ == "__main__":
    main()
