"""Fit each model's session-time regression T_m(N, mean, max) on the simulator's engine model.

    python experiments/fit_session_costs.py [--profiles mosaic/profiles/data/paper_a100.yaml] [--models LlamaR1,...]

Writes each model's best form into the profile file as its `session_fit` and prints every form's
held-out error. Method: mosaic/fitting/session_costs.py (fit_file).
"""
import sys
from pathlib import Path

from mosaic.core.arguments import ArgumentParser
from mosaic.core.errors import ConfigError
from mosaic.fitting.lengths import DEFAULT_OUT
from mosaic.fitting.session_costs import fit_file


def main() -> None:
    ap = ArgumentParser(description=__doc__)
    ap.add_argument("--profiles", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--models", default="", help="comma-separated; default: every model in the file")
    args = ap.parse_args()
    try:
        fit_file(args.profiles, [m for m in args.models.split(",") if m] or None)
    except ConfigError as e:   # a bad profile file or model name: one line (was a traceback)
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
