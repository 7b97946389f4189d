"""What engine_aware's distance from the lower bound is made of: engine_aware planned again with
the run's realised per-model lengths, with every request dealt by its true length, and both,
against the benchmark's bound and clairvoyant reference.

    python experiments/information_gap.py        # results/scheduler_bench.csv -> results/information_gap.md
    python experiments/information_gap.py --table /tmp/b/scheduler_bench.csv --quick --out /tmp/b/gap.md

~3 min for the committed table. Logic: mosaic/analysis/information_gap.py.
"""
import sys
from pathlib import Path

from mosaic.analysis.information_gap import write
from mosaic.core.arguments import ArgumentParser, rerun_command
from mosaic.core.errors import ConfigError
from mosaic.run.jobs import RunDirError, out_arg

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = ArgumentParser(description=__doc__)
    ap.add_argument("--table", type=Path, default=ROOT / "results" / "scheduler_bench.csv")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "information_gap.md")
    ap.add_argument("--seed", type=int, default=0, help="the benchmark's seed (it makes the instances again)")
    ap.add_argument("--quick", action="store_true", help="the table was made with bench_scheduler.py --quick")
    args = ap.parse_args()
    if args.seed < 0:
        ap.error(f"--seed must be >= 0 (got {args.seed})")
    if not args.table.is_file():   # before --out is made: a refused command leaves nothing behind
        ap.error(f"--table {args.table}: no such file; make it with python experiments/bench_scheduler.py "
                 "(--out DIR writes DIR/scheduler_bench.csv)")
    out_arg(ap, args.out, file=True)
    command = rerun_command("experiments/information_gap.py", sys.argv[1:])
    try:
        print(write(args.table, args.out, args.seed, args.quick, command=command), end="")
    except (ConfigError, RunDirError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
