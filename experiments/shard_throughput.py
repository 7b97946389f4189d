"""Fig. 3b: one engine's output throughput against the number of prompts it serves, per model.

    python experiments/shard_throughput.py [--workload mmlu_pro] [--sizes 16 32 64 137 239 512 1024]

Writes figure_data/fig3b_shard_throughput.csv and shard_throughput.md under --out.
Method: mosaic/analysis/shard_throughput.py.
"""
import sys
from pathlib import Path

from mosaic.analysis.shard_throughput import DEFAULT_SIZES, write
from mosaic.core.arguments import ArgumentParser, rerun_command
from mosaic.run.builder import CONF_DIR
from mosaic.core.arguments import out_arg

ROOT = Path(__file__).resolve().parents[1]


WORKLOADS = sorted(p.stem for p in (CONF_DIR / "workload").glob("*.yaml"))


def main() -> None:
    ap = ArgumentParser(description=__doc__)
    ap.add_argument("--workload", choices=WORKLOADS, default="mmlu_pro", help="a mosaic/conf/workload option")
    ap.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES))
    ap.add_argument("--out", type=Path, default=ROOT / "results")
    args = ap.parse_args()
    if min(args.sizes) < 1:
        ap.error(f"--sizes: shard sizes are prompts per session, each >= 1 (got {min(args.sizes)})")
    out_arg(ap, args.out)   # before the work, not after it
    print(write(args.out, args.workload, args.sizes, command=rerun_command("experiments/shard_throughput.py", sys.argv[1:])))


if __name__ == "__main__":
    main()
