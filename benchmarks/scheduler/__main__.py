"""Scheduler benchmark: every policy on generated instances (N, M, demand skew, model mix, K,
memory), the synthetic presets and the paper's question sets; simulated expert-stage makespan over
a lower bound, prediction error, solve time and plan reproducibility.

    python -m benchmarks.scheduler                       # everything (~15 min on 2 cores)
    python -m benchmarks.scheduler --quick --out /tmp/b  # tiny instances, seconds
    python -m benchmarks.scheduler --families generated --policies ilp round_robin
    python -m benchmarks.scheduler --jobs 16               # instances in 16 processes, the same rows

Writes <out>/scheduler_bench.md and <out>/scheduler_bench.csv; prints one line per instance.
Logic: benchmarks/scheduler/bench.py.
"""
import os
import sys
from pathlib import Path

from benchmarks.scheduler.bench import FAMILIES, default_policies, write
from mosaic.core.arguments import ArgumentParser, repeated, rerun_command
from mosaic.core.arguments import out_arg
from mosaic.schedulers import available

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    ap = ArgumentParser(prog="python -m benchmarks.scheduler", description=__doc__)
    ap.add_argument("--out", type=Path, default=ROOT / "results")
    ap.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    ap.add_argument("--policies", nargs="+", default=None,
                    help=f"default: every registered policy but tensor_parallel ({', '.join(default_policies())})")
    ap.add_argument("--quick", action="store_true", help="tiny instances (the tests' subset)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=1,
                    help="instances benchmarked at once, each in its own process (0: one per CPU core); "
                         "the rows are the same, only solve times share the machine")
    args = ap.parse_args()
    if args.jobs < 0:
        ap.error(f"--jobs must be >= 0 (got {args.jobs}; 0 is one per CPU core)")
    jobs = args.jobs or os.cpu_count() or 1
    if args.seed < 0:
        ap.error(f"--seed must be >= 0 (got {args.seed})")
    if args.policies and repeated(args.policies):
        ap.error(f"--policies names {', '.join(repeated(args.policies))} "
                 "more than once: each policy is one column of the table")
    if len(set(args.families)) < len(args.families):
        ap.error("--families names a family more than once")
    unknown = sorted(set(args.policies or ()) - set(available()))
    if unknown:
        ap.error(f"--policies: unknown {', '.join(unknown)}; choose from {', '.join(sorted(available()))}")
    out_arg(ap, args.out)   # before the work, not after it
    command = rerun_command("-m benchmarks.scheduler", sys.argv[1:])
    write(args.out, args.families, args.policies, args.seed, args.quick,
          progress=lambda line: print(line, flush=True), command=command, jobs=jobs)
    print(f"wrote {args.out / 'scheduler_bench.md'} and {args.out / 'scheduler_bench.csv'}")


if __name__ == "__main__":
    main()
