"""The `mosaic` command (console script; also `python -m mosaic`).

    mosaic run [OVERRIDES]          one run (Hydra app: mosaic run --help lists groups and settings)
    mosaic sweep [OVERRIDES]        a Hydra multirun: one run per combination of comma-separated values
    mosaic runs DIR [--csv FILE]    the finished runs under DIR as one table, a column per override
    mosaic timeline DIR... [--pdf]  (re)draw a run folder's timeline.png (a sweep's folder: each run's)
    mosaic perfetto DIR...          (re)write a run folder's trace.perfetto.json (a sweep's: each run's)
    mosaic record --questions F --experts A,B --out DIR   real experts' outputs as trace files
    mosaic capacity [OVERRIDES] [--policies ...]   the highest arrival rate each policy sustains at an SLO

Each subcommand imports only what it needs, so `mosaic --help` and `mosaic run --help` answer at once.
"""
from __future__ import annotations

import sys
from collections.abc import Callable, Sequence   # not typing: ~5 ms before Ctrl-C is handled

USAGE = __doc__.split("\n\n")[1]


def _run(args: list[str]) -> int:
    from mosaic.cli.main import main
    main(args)
    return 0


def _sweep(args: list[str]) -> int:
    return _run(args if {"-m", "--multirun"} & set(args) else ["-m", *args])


DEFAULT_COLUMNS = ("end_to_end_s", "expert_stage_s", "aggregator_stage_s", "accuracy")
# Shown beside them where the runs include online ones (arrivals other than batch).
ONLINE_COLUMNS = ("online.slo_attainment", "online.goodput_qps", "online.query_e2e_s.p99")


def _runs(args: list[str]) -> int:
    from pathlib import Path

    from mosaic.core.arguments import ArgumentParser

    ap = ArgumentParser(prog="mosaic runs", description="The finished runs under DIR (a sweep's "
                        "or a run's folder) as one table: a row per run, a column per override.")
    ap.add_argument("dir", type=Path)
    ap.add_argument("--csv", type=Path, help="write the whole table (every summary value) to this CSV file")
    ap.add_argument("--requests", type=Path, help="write every request of every run (their trace.csv rows, "
                    "with run_dir and the overrides) to this .parquet (needs pyarrow: pip install "
                    "'mosaic-moa[parquet]') or .csv file")
    ap.add_argument("--columns", default=None,
                    help="summary columns to print beside the overrides (comma-separated; default: "
                         f"{','.join(DEFAULT_COLUMNS)}, those the runs have)")
    a = ap.parse_args(args)
    if not a.dir.is_dir():
        print(f"error: {a.dir} is not a directory; give a run's or a sweep's folder", file=sys.stderr)
        return 2
    if a.requests is not None and a.requests.suffix not in (".parquet", ".csv"):
        print(f"error: --requests {a.requests}: name a .parquet or a .csv file", file=sys.stderr)
        return 2
    if a.csv is not None and a.csv.suffix not in ("", ".csv"):   # CSV text, whatever the name says
        print(f"error: --csv {a.csv}: it writes CSV; name a .csv file (--requests writes .parquet)", file=sys.stderr)
        return 2
    if a.csv is not None and a.requests is not None and a.csv.resolve() == a.requests.resolve():
        print(f"error: --csv and --requests both name {a.csv}; the second table would replace the first: "
              "name two files", file=sys.stderr)
        return 2
    from mosaic.core.rundir import ERROR_FILE, RUN_FILES, SUMMARY_FILE, RunDirError, check_writable_file, write_error

    elsewhere = "free space there, or name a file somewhere writable"

    for flag, target in (("--csv", a.csv), ("--requests", a.requests)):
        if target is None:
            continue
        if target.is_dir() or not target.parent.is_dir():
            why = "is a directory" if target.is_dir() else f"is in {target.parent}, which is not a directory"
            print(f"error: {flag} {target} {why}; name a file in an existing folder", file=sys.stderr)
            return 2
        if target.name in RUN_FILES and any((target.parent / f).exists() for f in (SUMMARY_FILE, ERROR_FILE)):
            # it would replace that run's own output (and the run would still be listed as finished)
            print(f"error: {flag} {target} is an output of the run in {target.parent}; name a file outside "
                  "run folders, or another name", file=sys.stderr)
            return 2
        try:   # an existing folder that takes no files (read-only, /proc) is said now, not after the work
            check_writable_file(target, flag)
        except RunDirError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    if a.requests is not None and a.requests.suffix == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            print("error: --requests .parquet needs pyarrow: pip install pyarrow (or write a .csv)", file=sys.stderr)
            return 2
    from mosaic.analysis.runs import load_runs, override_columns

    df = load_runs(a.dir)
    for d, why in df.attrs["skipped"]:
        print(f"skipped {d}: {why}", file=sys.stderr)
    if df.empty:
        print(f"error: no finished run under {a.dir}", file=sys.stderr)
        return 2
    if a.csv:
        try:
            df.to_csv(a.csv, index=False)
        except OSError as e:
            print(f"error: --csv {write_error(a.csv, e, elsewhere)}", file=sys.stderr)
            return 2
        print(f"wrote {a.csv}", file=sys.stderr)
    if a.requests:
        from mosaic.analysis.runs import load_requests, write_table

        try:
            requests = load_requests(a.dir, df)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        try:
            write_table(requests, a.requests)
        except OSError as e:
            print(f"error: --requests {write_error(a.requests, e, elsewhere)}", file=sys.stderr)
            return 2
        print(f"wrote {a.requests} ({len(requests)} requests of {len(df)} runs)", file=sys.stderr)
    # Unasked, the default columns the runs have (an agent-graph run has no stages but a makespan,
    # shown wherever some run has no end-to-end time).
    graph_runs = "end_to_end_s" not in df.columns or bool(df["end_to_end_s"].isna().any())
    wanted = ([c for c in a.columns.split(",") if c] if a.columns is not None
              else [c for c in (*DEFAULT_COLUMNS, "makespan_s", *ONLINE_COLUMNS) if c in df.columns
                    and (c != "makespan_s" or graph_runs)])
    unknown = [c for c in wanted if c not in df.columns]
    if unknown:
        print(f"error: --columns {','.join(unknown)} not in the runs' summaries (e.g. {', '.join(list(df.columns)[:6])})",
              file=sys.stderr)
        return 2
    print(df[["run_dir", *override_columns(df), *wanted]].to_string(index=False))
    return 0


def _tool(module: str) -> Callable[[list[str]], int]:
    def call(args: list[str]) -> int:
        import importlib
        return importlib.import_module(module).main(args)
    return call


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "run": _run, "sweep": _sweep, "runs": _runs,
    "timeline": _tool("mosaic.run.timeline"), "perfetto": _tool("mosaic.run.perfetto"),
    "record": _tool("mosaic.run.record"), "capacity": _tool("mosaic.analysis.capacity"),
}


def main(argv: Sequence[str] | None = None) -> int:
    from mosaic.core.interrupts import install_early, uninstall_early
    early = install_early()   # before any of the command's imports: a Ctrl-C during them is one line
    try:
        return _dispatch(list(sys.argv[1:] if argv is None else argv))
    finally:
        uninstall_early(early)


def _dispatch(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print("usage: mosaic COMMAND [ARGS]\n\n" + USAGE + "\n\nREADME.md has the walkthrough; docs/outputs.md "
              "every output file.")
        return 0 if argv else 2
    if argv[0] == "--version":
        from importlib.metadata import version
        print(f"mosaic {version('mosaic-moa')}")
        return 0
    cmd = COMMANDS.get(argv[0])
    if cmd is None:
        print(f"error: unknown command '{argv[0]}'; choose one of {', '.join(COMMANDS)} (mosaic --help)",
              file=sys.stderr)
        return 2
    sys.argv[0] = f"mosaic {argv[0]}"
    from mosaic.cli.signals import quiet_interrupt, sigterm_as_exit

    # Entered before a command's imports: a Ctrl-C or SIGTERM during them is one line, not a traceback.
    with quiet_interrupt(), sigterm_as_exit():
        return cmd(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
