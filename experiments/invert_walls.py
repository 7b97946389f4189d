"""The paper's stage walls, turned into the output lengths they imply under our engine.

    python experiments/invert_walls.py [--seed 0] [--out results]

Writes wall_inversion.md and figure_data/wall_inversion_{aggregator,expert}.csv under --out.
Method: mosaic/analysis/wall_inversion.py and mosaic/analysis/stage_inversion.py.
"""
import sys
from pathlib import Path

from mosaic.analysis.wall_inversion import write
from mosaic.core.arguments import ArgumentParser, rerun_command
from mosaic.core.arguments import out_arg

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = ArgumentParser(description=__doc__)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "results")
    args = ap.parse_args()
    if args.seed < 0:
        ap.error(f"--seed must be >= 0 (got {args.seed})")
    out_arg(ap, args.out)   # before the work, not after it
    print(write(args.out, args.seed, rerun_command("experiments/invert_walls.py", sys.argv[1:])))


if __name__ == "__main__":
    main()
