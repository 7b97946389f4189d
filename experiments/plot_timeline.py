"""Per-worker timelines of several policies on one workload, on a shared time axis.

    python experiments/plot_timeline.py                         # ilp vs round_robin, default workload
    python experiments/plot_timeline.py --policies ilp fifo data_parallel --workload synth_gpqa
"""
import argparse
from pathlib import Path

from mosaic.analysis.figures import policy_timelines

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policies", nargs="+", default=["round_robin", "ilp"])
    ap.add_argument("--workload", default="synth_mmlu_pro")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "timeline.png")
    args = ap.parse_args()
    policy_timelines(args.policies, args.workload, args.seed, args.out)


if __name__ == "__main__":
    main()
