"""Fit output-length shapes to real model outputs and write mosaic/profiles/data/paper_a100.yaml.

    python experiments/fit_profiles.py [--data ../shared/data] [--out mosaic/profiles/data/paper_a100.yaml]

Then fits every model's session-time regression into the file (experiments/fit_session_costs.py's
job). Method and sources: mosaic/fitting/lengths.py.
"""
import sys
from pathlib import Path

from mosaic.core.arguments import ArgumentParser
from mosaic.core.errors import ConfigError
from mosaic.fitting.lengths import DEFAULT_DATA, DEFAULT_OUT, fit_profiles
from mosaic.core.arguments import out_arg


def main() -> None:
    ap = ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    out_arg(ap, args.out, file=True)   # before the work, not after it
    if not args.data.is_dir():
        ap.error(f"--data {args.data} is not a folder: point it at ../shared/data (its traces/ are read)")
    if not (args.data / "traces").is_dir():
        ap.error(f"--data {args.data} has no traces/ folder: point it at ../shared/data (its traces/ are read)")
    try:
        fit_profiles(args.data, args.out)
    except ConfigError as e:   # a trace missing or damaged under --data: one line (was a traceback)
        print(f"error: --data {args.data}: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
