"""Online serving benchmark (logic: benchmarks/online/bench.py).

    python -m benchmarks.online                       # every workload, writes results/online.md/.csv/.png
    python -m benchmarks.online --workloads moa --seeds 0 --out /tmp/o
"""
import sys
from pathlib import Path

from benchmarks.online.bench import AZURE, MAIN, WORKLOADS, hour_run, plot, render, render_hour, run_workload
from mosaic.core.arguments import ArgumentParser, out_arg, rerun_command
from mosaic.core.rundir import write_atomic, write_text_atomic
from mosaic.core.tables import write_csv

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    ap = ArgumentParser(prog="python -m benchmarks.online", description=__doc__)
    ap.add_argument("--workloads", nargs="+", choices=sorted(WORKLOADS), default=list(WORKLOADS),
                    help=f"default: all ({', '.join(MAIN)} are the issue's three; the others isolate one effect)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--target", type=float, default=0.99)
    ap.add_argument("--no-hour", action="store_true", help="skip the one-hour Azure trace run (about 2 minutes)")
    ap.add_argument("--out", type=Path, default=ROOT / "results")
    args = ap.parse_args()
    out_arg(ap, args.out)
    results = []
    for name in args.workloads:
        if name == "azure" and not AZURE.is_file():
            results.append({"workload": name, "what": WORKLOADS[name][1], "overrides": WORKLOADS[name][0],
                            "skipped": f"{AZURE} is not there (the shared data folder beside the checkout)"})
            continue
        results.append(run_workload(name, args.seeds, args.target, lambda m: print(m, file=sys.stderr, flush=True)))
    hour = None
    if not args.no_hour and AZURE.is_file():
        import tempfile
        with tempfile.TemporaryDirectory() as tmp:
            hour = hour_run(Path(tmp) / "hour")
    command = rerun_command("-m benchmarks.online", sys.argv[1:])
    md = render(results, args.seeds, args.target, command) + "\n" + render_hour(hour)
    write_atomic(args.out / "online.csv", lambda f: write_csv(f, [r for res in results for r in res.get("rows", [])]))
    write_text_atomic(args.out / "online.md", md)
    plot(results, args.out / "online.png")
    print(md)


if __name__ == "__main__":
    main()
