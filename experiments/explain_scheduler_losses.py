"""Where engine_aware loses in the scheduler benchmark, and whether its own prediction misled it.

    python experiments/explain_scheduler_losses.py       # results/scheduler_bench.csv -> results/scheduler_losses.md
    python experiments/explain_scheduler_losses.py --table /tmp/b/scheduler_bench.csv --out /tmp/b/losses.md
    python experiments/explain_scheduler_losses.py --instances synth_medmcqa-N4 --redraws 96 --out /tmp/l.md

Re-plans each lost instance with engine_aware and the faster policy and prices the faster plan
with engine_aware's cost model, then simulates both plans again under 8 redraws of which request
lands on which replica and 8 fresh draws of every output from its model's length distribution
(--redraws sets both; ~6 min for the committed table). Logic:
mosaic/analysis/scheduler_losses.py.
"""
import sys
from pathlib import Path

from mosaic.analysis import bench_table
from mosaic.analysis.scheduler_losses import REDRAWS, write
from mosaic.core.arguments import ArgumentParser, rerun_command
from mosaic.core.errors import ConfigError
from mosaic.run.jobs import RunDirError

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = ArgumentParser(description=__doc__)
    bench_table.add_arguments(ap, ROOT / "results", "scheduler_losses.md")
    ap.add_argument("--redraws", type=int, default=REDRAWS,
                    help="per loss, both plans simulated again this many times with each model's outputs shuffled "
                         "among its requests, and as many with every output drawn anew from its model's "
                         "length distribution (0: none)")
    ap.add_argument("--instances", nargs="+", default=None, metavar="NAME",
                    help="only these of the table's lost instances (e.g. to draw them again many times)")
    args = ap.parse_args()
    if args.redraws < 0:
        ap.error(f"--redraws must be >= 0 (got {args.redraws})")
    bench_table.check_arguments(ap, args)
    command = rerun_command("experiments/explain_scheduler_losses.py", sys.argv[1:])
    try:
        print(write(args.table, args.out, args.seed, args.quick, command=command, redraws=args.redraws,
                    only=args.instances), end="")
    except (ConfigError, RunDirError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
