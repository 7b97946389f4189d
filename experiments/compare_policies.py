"""Compare scheduling policies on the three synthetic dataset presets, side by side in one run.

    python experiments/compare_policies.py                # 3 presets x 6 policies x seeds 0,1,2
    python experiments/compare_policies.py --seeds 0      # quicker
    python experiments/compare_policies.py --out results  # update the committed results/policies.*

Prints a table and writes policies.csv and policies.md under --out (default outputs/policies; --out
is checked first: a file or an unwritable directory exits 2 before any run). Every run uses the same
Hydra config as experiments/run.py (mosaic/conf/), only with group overrides. Logic: mosaic/analysis/policies.py.
"""
import sys
from pathlib import Path

from mosaic.analysis.policies import write
from mosaic.core.arguments import ArgumentParser, rerun_command
from mosaic.core.errors import ConfigError
from mosaic.core.rundir import RunDirError

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "policies",
                    help="where to write (default outputs/policies; results updates the committed page)")
    args = ap.parse_args()
    if len(set(args.seeds)) < len(args.seeds):   # each run twice, spreads of 0 over copies
        ap.error(f"--seeds names a seed more than once ({' '.join(map(str, args.seeds))}); give distinct seeds")
    try:
        print(write(args.out, args.seeds, rerun_command("experiments/compare_policies.py", sys.argv[1:])))
    except (RunDirError, ConfigError) as e:   # --out unusable or a bad seed: said before any run starts
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
