"""Fit output-length shapes to real model outputs and write mosaic/profiles/data/paper_a100.yaml.

    python experiments/fit_profiles.py [--data ../shared/data] [--out mosaic/profiles/data/paper_a100.yaml]

Then fits every model's session-time regression into the file (experiments/fit_session_costs.py's
job). Method and sources: mosaic/fitting/lengths.py.
"""
import argparse
from pathlib import Path

from mosaic.fitting.lengths import DEFAULT_DATA, DEFAULT_OUT, fit_profiles
from mosaic.run.jobs import RunDirError, check_writable_file


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    try:
        check_writable_file(args.out, "--out")
    except RunDirError as e:   # said before the work, not after it
        ap.error(str(e))
    fit_profiles(args.data, args.out)


if __name__ == "__main__":
    main()
