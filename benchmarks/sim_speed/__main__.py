"""Simulator speed benchmark (logic: benchmarks/sim_speed/bench.py).

    python -m benchmarks.sim_speed                     # every case, writes results/sim_speed.md
    python -m benchmarks.sim_speed --cases flat-N4 dense-c32-N4 --out /tmp/s
    python -m benchmarks.sim_speed --before DIR        # DIR/sim_speed.json: an earlier run's rows, side by side
"""
import json
import sys
from pathlib import Path

from benchmarks.sim_speed.bench import CASES, MAIN, QUICK, measure, render, run_cases
from mosaic.core.arguments import ArgumentParser, out_arg, rerun_command
from mosaic.core.rundir import write_text_atomic

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    ap = ArgumentParser(prog="python -m benchmarks.sim_speed", description=__doc__)
    ap.add_argument("--case", choices=sorted(CASES), help="run one case in this process and print its row (JSON)")
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("--cases", nargs="+", choices=sorted(CASES), default=MAIN)
    ap.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}")
    ap.add_argument("--no-shares", action="store_true", help="skip the profiled second pass (time by component)")
    ap.add_argument("--before", type=Path, help="a folder with an earlier run's sim_speed.json to compare with")
    ap.add_argument("--out", type=Path, default=ROOT / "results")
    args = ap.parse_args()
    if args.case:
        print(json.dumps(measure(args.case, profile=not args.no_profile)))
        return
    out_arg(ap, args.out)
    before = None
    if args.before is not None:
        f = args.before / "sim_speed.json"
        if not f.is_file():
            ap.error(f"--before {args.before}: no sim_speed.json there")
        before = {r["case"]: r for r in json.loads(f.read_text())}
    names = list(QUICK) if args.quick else args.cases
    rows = run_cases(names, profile=False)
    shares = {} if args.no_shares else {
        r["case"]: r.get("components") for r in run_cases([n for n in names if "1M" not in n and "N256" not in n])}
    for r in rows:
        r["components"] = shares.get(r["case"])
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / "sim_speed.json", json.dumps(rows, indent=1) + "\n")
    md = render(rows, before, rerun_command("-m benchmarks.sim_speed", sys.argv[1:]))
    write_text_atomic(args.out / "sim_speed.md", md)
    print(md)


if __name__ == "__main__":
    main()
