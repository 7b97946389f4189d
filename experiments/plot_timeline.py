"""Per-worker timelines of several policies on one workload, on a shared time axis.

    python experiments/plot_timeline.py                         # ilp vs round_robin, default workload
    python experiments/plot_timeline.py --policies ilp fifo data_parallel --workload synth_gpqa
"""
import argparse
from pathlib import Path

import matplotlib.pyplot as plt
from hydra import compose, initialize_config_dir

from mosaic.run.app import run
from mosaic.config.schema import register_configs
from mosaic.analysis.plots import session_rows, timeline

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policies", nargs="+", default=["round_robin", "ilp"])
    ap.add_argument("--workload", default="synth_mmlu_pro")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "timeline.png")
    args = ap.parse_args()
    register_configs()
    runs = []
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        for pol in args.policies:
            cfg = compose("config", [f"scheduler={pol}", f"workload={args.workload}", f"seed={args.seed}"])
            runs.append((pol, run(cfg)))
    xmax = max(o.summary["end_to_end_s"] for _, o in runs) * 1.02
    fig, axes = plt.subplots(len(runs), 1, figsize=(10, 2.2 * len(runs)), squeeze=False)
    for ax, (pol, o) in zip(axes[:, 0], runs):
        s = o.summary
        timeline(session_rows([o.result.expert.trace, o.result.aggregator.trace]),
                 f"{pol}: expert {s['expert_stage_s']:.0f} s + aggregator {s['aggregator_stage_s']:.0f} s "
                 f"= {s['end_to_end_s']:.0f} s", ax=ax, xmax=xmax, n_workers=len(s['workers']))
    fig.suptitle(f"{args.workload}, seed {args.seed}, 4x A100-80GB (simulated)", fontsize=10)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
