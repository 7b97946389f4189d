"""A scheduler benchmark table (scheduler_bench.csv) read back by the analyses that re-plan its
instances (scheduler_losses, information_gap): the file, its command-line arguments, and the check
that a plan made again is the one the table simulated."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

import pandas as pd

from benchmarks.scheduler import bench as sb
from mosaic.core.errors import ConfigError
from mosaic.core.arguments import out_arg
from mosaic.core.rundir import RunDirError

TABLE = "scheduler_bench.csv"


def add_arguments(ap: argparse.ArgumentParser, results: Path, out_name: str) -> None:
    """--table (default results/scheduler_bench.csv), --out (default results/`out_name`), --seed
    and --quick: the benchmark run the table came from."""
    ap.add_argument("--table", type=Path, default=results / TABLE)
    ap.add_argument("--out", type=Path, default=results / out_name)
    ap.add_argument("--seed", type=int, default=0, help="the benchmark's seed (it makes the instances again)")
    ap.add_argument("--quick", action="store_true", help="the table was made with python -m benchmarks.scheduler --quick")


def check_arguments(ap: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse a bad --seed or a missing --table before --out is made, so a refused command leaves
    nothing behind; then make sure --out can be written, before the minutes of planning."""
    if args.seed < 0:
        ap.error(f"--seed must be >= 0 (got {args.seed})")
    if not args.table.is_file():
        ap.error(f"--table {args.table}: no such file; make it with python -m benchmarks.scheduler "
                 "(--out DIR writes DIR/scheduler_bench.csv)")
    out_arg(ap, args.out, file=True)


def report(write: Callable[[], str]) -> None:
    """Print what `write` wrote; a refusal (a damaged table, an unusable --out) is one line, exit 2."""
    try:
        print(write(), end="")
    except (ConfigError, RunDirError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def read_table(table_path: Path) -> pd.DataFrame:
    """A benchmark table, or a ConfigError naming the file and the fix."""
    try:
        return pd.read_csv(table_path)
    except OSError as e:
        raise ConfigError(f"{table_path}: cannot read it ({e.strerror}); run python -m benchmarks.scheduler "
                          "first") from None
    except (ValueError, pd.errors.ParserError) as e:
        raise ConfigError(f"{table_path}: not a CSV table ({' '.join(str(e).split())[:200]})") from None


def same_plan(table: pd.DataFrame, name: str, policy: str, plan, seed: int, quick: bool) -> None:
    """The plan made again is the one the table simulated, or the table's numbers describe another."""
    row = table[(table.instance == name) & (table.policy == policy)]
    made = sb.plan_hash(plan)
    if row.empty or str(row.plan_hash.iloc[0]) != made:
        raise ConfigError(f"the table's {policy} plan of {name} is not the one seed {seed}"
                          f"{' --quick' if quick else ''} plans here (plan hash "
                          f"{row.plan_hash.iloc[0] if not row.empty else 'none'} in the table, {made} now): the "
                          "table comes from another --seed or --quick, another version or another machine; rerun "
                          "python -m benchmarks.scheduler with the same settings")
