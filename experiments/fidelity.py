"""Simulator fidelity suite: each case's plan on backend=sim and on real vLLM engines (3 repeats).

    python experiments/fidelity.py                        # every case of mosaic/conf/fidelity.yaml
    python experiments/fidelity.py --case long_decode --repeats 1
    python experiments/fidelity.py --profile-check warn   # compare even where the profile is stale
    python experiments/fidelity.py --profile-check each   # check the host again before every case, per worker
    python experiments/fidelity.py --resimulate results/fidelity.json   # the simulated side only, against stored real runs

Before any case it checks that the profile still describes this machine (a few of the profiler's
own batches re-measured: mosaic/fidelity/profile_check.py) and stops if not, naming the re-profile
command; the check's result heads the table.

Writes results/fidelity.md and fidelity.json (with --case: fidelity-CASE.md/.json, the suite's table
is left as it is). --resimulate re-runs only the simulated side, with this checkout's profile and
simulator, against the real runs an earlier suite stored (fidelity.resim.md/.json; no engine starts).
Method: mosaic/fidelity/suite.py.
"""
import sys
from pathlib import Path

from mosaic.fidelity.suite import OUT, SUITE, resimulate, write
from mosaic.core.arguments import ArgumentParser
from mosaic.core.errors import ConfigError
from mosaic.core.arguments import out_arg


def main() -> None:
    ap = ArgumentParser(description=__doc__)
    ap.add_argument("--case", action="append", default=[], help="run only this case (repeatable)")
    ap.add_argument("--repeats", type=int, default=None, help="real runs per case (default: the suite's)")
    ap.add_argument("--suite", type=Path, default=SUITE, help="suite file (default mosaic/conf/fidelity.yaml)")
    ap.add_argument("--out", type=Path, default=OUT, help="folder for fidelity.md/.json")
    ap.add_argument("--profile-check", choices=("stop", "warn", "off", "each"), default="stop",
                    help="first re-measure a few of the profile's own batches (experiments/check_profile.py): "
                         "stop when the profile does not describe this machine (default), warn and go on, off, "
                         "or each: before every case, for its models, each worker's ratio kept beside the "
                         "case's sessions (a host whose speed drifts, or whose cores differ)")
    ap.add_argument("--resimulate", type=Path, default=None, metavar="FIDELITY_JSON",
                    help="simulate again against the real runs stored in this fidelity.json (no engine starts)")
    args = ap.parse_args()
    if args.resimulate is not None and (args.repeats is not None or args.profile_check != "stop"):
        ap.error("--resimulate runs no engine: --repeats and --profile-check do not apply to it")
    if args.repeats is not None and args.repeats < 1:
        ap.error(f"--repeats must be >= 1 real run per case (got {args.repeats})")
    out_arg(ap, args.out)   # before the work, not after it
    try:
        if args.resimulate is not None:
            print(resimulate(args.resimulate, args.out, args.suite, args.case), end="")
        else:
            print(write(args.out, args.suite, args.case, args.repeats, check=args.profile_check), end="")
    except ConfigError as e:   # a bad suite file, case name or setting: one line, before any engine
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
