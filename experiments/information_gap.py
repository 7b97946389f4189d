"""What engine_aware's distance from the lower bound is made of: engine_aware planned again with
the run's realised per-model lengths, with every request dealt by its true length, and both,
against the benchmark's bound and clairvoyant reference.

    python experiments/information_gap.py        # results/scheduler_bench.csv -> results/information_gap.md
    python experiments/information_gap.py --table /tmp/b/scheduler_bench.csv --quick --out /tmp/b/gap.md

~3 min for the committed table. Logic: mosaic/analysis/information_gap.py.
"""
import sys
from pathlib import Path

from mosaic.analysis import bench_table
from mosaic.analysis.information_gap import write
from mosaic.core.arguments import ArgumentParser, rerun_command
from mosaic.core.errors import ConfigError
from mosaic.run.jobs import RunDirError

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = ArgumentParser(description=__doc__)
    bench_table.add_arguments(ap, ROOT / "results", "information_gap.md")
    args = ap.parse_args()
    bench_table.check_arguments(ap, args)
    command = rerun_command("experiments/information_gap.py", sys.argv[1:])
    try:
        print(write(args.table, args.out, args.seed, args.quick, command=command), end="")
    except (ConfigError, RunDirError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
