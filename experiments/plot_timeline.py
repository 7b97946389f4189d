"""Per-worker timelines of several policies on one workload, on a shared time axis.

    python experiments/plot_timeline.py                         # ilp vs round_robin, default workload
    python experiments/plot_timeline.py --policies ilp fifo data_parallel --workload synth_gpqa
    python experiments/plot_timeline.py --runs outputs/A outputs/B --out cmp.png   # finished run folders, any backend
"""
from pathlib import Path

from mosaic.analysis.figures import policy_timelines, run_dir_timelines
from mosaic.core.arguments import ArgumentParser, repeated
from mosaic.run.builder import CONF_DIR
from mosaic.core.arguments import out_arg

ROOT = Path(__file__).resolve().parents[1]


WORKLOADS = sorted(p.stem for p in (CONF_DIR / "workload").glob("*.yaml"))
POLICIES = sorted(p.stem for p in (CONF_DIR / "scheduler").glob("*.yaml"))


def main() -> None:
    ap = ArgumentParser(description=__doc__)
    ap.add_argument("--policies", nargs="+", choices=POLICIES, default=["round_robin", "ilp"])
    ap.add_argument("--workload", choices=WORKLOADS, default="synth_mmlu_pro")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runs", nargs="+", type=Path, default=None,
                    help="draw these finished run folders (from their files) instead of simulating policies")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "timeline.png")
    args = ap.parse_args()
    twice = repeated(args.policies)
    if twice:
        ap.error(f"--policies names {', '.join(twice)} more than once; each policy is one row")
    if args.seed < 0:
        ap.error(f"--seed must be >= 0 (got {args.seed})")
    if args.runs:   # the folders' own files say what ran: these would be ignored
        given = [f"--{k}" for k in ("policies", "workload", "seed") if getattr(args, k) != ap.get_default(k)]
        if given:
            verb = "selects" if len(given) == 1 else "select"
            ap.error(f"{', '.join(given)} {verb} what to simulate, and --runs draws finished runs instead; "
                     "give one or the other")
    out_arg(ap, args.out, file=True)   # before the work, not after it
    if args.runs:
        try:
            run_dir_timelines(args.runs, args.out)
        except (FileNotFoundError, KeyError, ValueError) as e:
            ap.error(str(e))
        return
    policy_timelines(args.policies, args.workload, args.seed, args.out)


if __name__ == "__main__":
    main()
