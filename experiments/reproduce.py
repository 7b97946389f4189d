"""Reproduce the paper's table and figures: check data -> sweeps -> collect -> figures, in one command.

    python experiments/reproduce.py                 # every sweep in SWEEPS, then collect and figures
    python experiments/reproduce.py seed=0          # extra Hydra overrides go to every sweep
    python experiments/reproduce.py --sweeps main,K # only these sweeps (folder names in SWEEPS)
    python experiments/reproduce.py --out DIR --sweep-root DIR2   # elsewhere than results/, multirun/paper
    python experiments/reproduce.py --check         # only check the data every job will read

Exit status 1 when a job or step failed (each listed), 2 for bad arguments or data. The sweeps
(SWEEPS) and the steps: mosaic/analysis/sweeps.py.
"""
import sys
from pathlib import Path

from mosaic.analysis.sweeps import SWEEP_ROOT, SWEEPS, reproduce
from mosaic.core.arguments import ArgumentParser
from mosaic.core.arguments import out_arg
from mosaic.cli.signals import sigterm_as_exit

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = ArgumentParser(description=__doc__,
                        epilog="Any other argument is a Hydra override given to every sweep's jobs "
                               "(e.g. seed=0 or workload=synth_small).")
    ap.add_argument("--out", type=Path, default=ROOT / "results", help="where tables and figures go")
    ap.add_argument("--sweep-root", type=Path, default=SWEEP_ROOT, help="where the sweeps' runs go")
    ap.add_argument("--sweeps", default=",".join(s.folder for s in SWEEPS),
                    help="comma-separated folders of SWEEPS to run (default: all)")
    ap.add_argument("--check", action="store_true", help="only check the sweeps' data, run nothing")
    args, extra = ap.parse_known_args(argv)
    flags = [a for a in extra if a.startswith("-")]
    if flags:   # not an override: Hydra's lexer would report it as a parse error
        ap.error(f"unrecognized arguments: {' '.join(flags)}")
    if not args.check:
        out_arg(ap, args.out)   # before the work, not after it
    return reproduce(args.out, args.sweep_root, args.sweeps, extra, args.check)


if __name__ == "__main__":
    with sigterm_as_exit():
        sys.exit(main())
