"""Measure how question difficulty couples answers and lengths, on real traces, per dataset.

    python experiments/fit_difficulty.py [--data ../shared/data] [--profiles mosaic/profiles/data/paper_a100.yaml]

Writes the `datasets` section of the profile file and results/difficulty_fit.md. Run after
experiments/fit_profiles.py, which rewrites the profile file from scratch. About 30 s on 2 cores.
Method: mosaic/fitting/difficulty.py (fit_datasets).
"""
import sys
from pathlib import Path

from mosaic.core.arguments import ArgumentParser
from mosaic.core.errors import ConfigError
from mosaic.core.arguments import out_arg
from mosaic.fitting.difficulty import DEFAULT_DATA, DEFAULT_PROFILES, DEFAULT_REPORT, fit_datasets


def main() -> None:
    ap = ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--profiles", type=Path, default=DEFAULT_PROFILES)
    ap.add_argument("--out", type=Path, default=DEFAULT_REPORT)
    ap.add_argument("--seeds", type=int, default=3, help="simulated replicates for the Fig. 7 check")
    args = ap.parse_args()
    out_arg(ap, args.out, file=True)   # before the work, not after it
    if not 1 <= args.seeds <= 1000:   # 0 failed after the fitting with a TypeError
        ap.error(f"--seeds must be a number of replicates in [1, 1000] (got {args.seeds})")
    if not args.profiles.is_file():
        ap.error(f"--profiles {args.profiles}: no such file (the profile file whose datasets are refitted)")
    try:
        fit_datasets(args.data, args.profiles, args.out, args.seeds)
    except ConfigError as e:   # exit 2 with one line, as every tool does for bad input
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
