"""Faster-MoA's four settings (all-to-all, tree, + overlap, + early exit) on its own agents, simulated.

    python experiments/faster_moa.py              # 64 queries, seed 0
    python experiments/faster_moa.py --queries 16 # quicker

Writes results/faster_moa.md, results/faster_moa.csv and results/figures/faster_moa_latency.png
(--out is checked first). Logic: mosaic/analysis/faster_moa.py.
"""
import sys
from pathlib import Path

from mosaic.analysis.faster_moa import write
from mosaic.core.arguments import ArgumentParser, rerun_command
from mosaic.core.errors import ConfigError
from mosaic.core.rundir import RunDirError

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = ArgumentParser(description=__doc__)
    ap.add_argument("--queries", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "results")
    args = ap.parse_args()
    if not 1 <= args.queries <= 100_000:
        ap.error(f"--queries must be a number of queries in [1, 100000] (got {args.queries})")
    if args.seed < 0:
        ap.error(f"--seed must be >= 0 (got {args.seed})")
    try:
        print(write(args.out, args.queries, args.seed, rerun_command("experiments/faster_moa.py", sys.argv[1:])))
    except (RunDirError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
