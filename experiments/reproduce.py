"""Reproduce the paper's table and figures: check data -> sweeps -> collect -> figures, in one command.

    python experiments/reproduce.py                 # every sweep in SWEEPS (conf/paper_sweep.yaml)
    python experiments/reproduce.py seed=0          # extra Hydra overrides go to every sweep
    python experiments/reproduce.py --out DIR       # tables and figures into DIR (default: results/)

Before any job starts, every workload the sweeps use is built once, so a missing or unreadable
question or trace file stops the run at once with the path and the config field to set. A job that
fails records error.json in its directory and the others go on (see mosaic/jobs.py); what succeeded
is still collected, then the failed jobs are listed with their overrides and errors, and the exit
status is 1. Progress: the joblib launcher prints each batch of finished jobs.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from mosaic.config import register_configs
from mosaic.errors import ConfigError
from mosaic.jobs import find_failures, format_failures, sigterm_as_exit

ROOT = Path(__file__).resolve().parents[1]

# Sweep axes that cannot change which data a workload reads: left out of the data check.
NOT_DATA = ("scheduler", "aggregation", "seed", "backend", "cluster", "hydra")


@dataclass(frozen=True)
class Sweep:
    """One Hydra multirun: a config under conf/ whose hydra.sweeper.params give the grid, plus
    overrides of its own (e.g. a variant's settings). Every sweep gets the command line's overrides."""
    title: str
    config_name: str
    overrides: tuple[str, ...] = ()


# The paper's experiment, the other policies, then one small multirun per variant (each config sets
# its own folder under multirun/paper/; the collector tells variants apart by the `settings` each run
# records). Only the runs the table reads: the baseline is round-robin with the aggregator always on,
# MOSAIC is the ILP under the gate (and, in the main sweep, always on too, for the tau sweep).
_ILP, _RR = ("scheduler=ilp",), ("scheduler=round_robin", "aggregation=always")
SWEEPS: tuple[Sweep, ...] = (
    Sweep("paper: ilp (K=2)", "paper_sweep", _ILP),
    Sweep("paper: round-robin", "paper_sweep", _RR),
    Sweep("other policies", "paper_sweep_policies"),
    Sweep("routing=paper_table3: ilp", "paper_sweep_table3", (*_ILP, "aggregation=tau1,tau067")),
    Sweep("routing=paper_table3: round-robin", "paper_sweep_table3", _RR),
    Sweep("K=3, K=none: ilp", "paper_sweep_k", ("aggregation=tau067",)),
    Sweep("placement=scheduled: ilp", "paper_sweep_placement", (*_ILP, "aggregation=tau1,tau067")),
    Sweep("placement=scheduled: round-robin", "paper_sweep_placement", _RR),
    Sweep("rr_order=pool: round-robin", "paper_sweep_rr_pool"),
    Sweep("replacement=false: ilp", "paper_sweep_no_replacement", (*_ILP, "aggregation=tau1,tau067")),
    Sweep("replacement=false: round-robin", "paper_sweep_no_replacement", _RR),
)


@dataclass(frozen=True)
class SweepPlan:
    sweep: Sweep
    overrides: tuple[str, ...]       # the sweep's own, then the command line's
    jobs: tuple[tuple[str, ...], ...]  # each job's overrides, as the basic sweeper will expand them
    directory: Path                  # hydra.sweep.dir, absolute


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def plan_sweep(sweep: Sweep, extra: list[str]) -> SweepPlan:
    """Expand a sweep into its jobs the way Hydra's basic sweeper does (sweeper.params, then the
    overrides; a later value for a key replaces the earlier one)."""
    overrides = (*sweep.overrides, *extra)
    parser = OverridesParser.create()
    parsed = parser.parse_overrides(list(overrides))
    plain = [o.input_line for o in parsed if not o.is_sweep_override()]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name=sweep.config_name, overrides=plain, return_hydra_config=True)
    params = [f"{k}={v}" for k, v in (OmegaConf.to_container(cfg.hydra.sweeper.params) or {}).items()]
    jobs = BasicSweeper.split_arguments(parser.parse_overrides(params + list(overrides)), None)[0]
    directory = Path(str(cfg.hydra.sweep.dir))
    return SweepPlan(sweep, overrides, tuple(tuple(j) for j in jobs),
                     directory if directory.is_absolute() else ROOT / directory)


def check_data(plans: list[SweepPlan]) -> list[str]:
    """Build every distinct workload the sweeps' jobs use, once: the question and trace files must
    exist and parse. Returns one line per problem (empty: all good)."""
    from mosaic.profiles import load_profiles
    from mosaic.workload.build import build_workload

    problems, seen = [], set()
    for plan in plans:
        variants = {tuple(o for o in job if not _key(o).startswith(NOT_DATA)) for job in plan.jobs}
        for variant in sorted(variants):
            where = f"{plan.sweep.title}, {' '.join(variant) or 'defaults'}"
            try:
                with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
                    cfg = compose(config_name=plan.sweep.config_name, overrides=list(variant))
                c = OmegaConf.to_container(cfg, resolve=True)
                key = json.dumps(c["workload"], sort_keys=True)
                if key in seen:
                    continue
                seen.add(key)
                build_workload(c["workload"], load_profiles(c["workload"]["profiles"]), c["seed"])
            except ConfigError as e:
                problems.append(f"{where}: {e}")
            except Exception as e:  # noqa: BLE001 - report every workload's problem, not just the first
                problems.append(f"{where}: {type(e).__name__}: {' '.join(str(e).split())}")
    return problems


def step(title: str, cmd: list[str]) -> int:
    """Run one command; return its exit status. SIGTERM here is passed on to it (Ctrl-C reaches it
    from the terminal directly), and it is waited for, so no sweep goes on running unseen."""
    print(f"\n== {title}: {' '.join(cmd)}", flush=True)
    t0 = time.perf_counter()
    with subprocess.Popen(cmd, cwd=ROOT) as p:
        try:
            rc = p.wait()
        except BaseException as e:
            if not isinstance(e, KeyboardInterrupt):
                p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=120)
            except subprocess.TimeoutExpired:
                p.kill()
            raise
    print(f"== {title} {'done' if rc == 0 else f'exited with code {rc}'} in {time.perf_counter() - t0:.0f} s",
          flush=True)
    return rc


def run_sweep(plan: SweepPlan) -> tuple[int, list[dict]]:
    """Run one multirun; returns its exit status and its failed jobs (error.json records)."""
    rc = step(plan.sweep.title, [sys.executable, "experiments/run.py", "--config-name", plan.sweep.config_name,
                                 "-m", "hydra/job_logging=disabled", *plan.overrides,
                                 f"hydra.sweep.dir={plan.directory}"])
    return rc, find_failures(plan.directory)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "results", help="where tables and figures go")
    args, extra = ap.parse_known_args(argv)
    register_configs()
    try:
        plans = [plan_sweep(s, extra) for s in SWEEPS]
    except Exception as e:  # noqa: BLE001 - a bad override: one line, before anything runs
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    n_jobs = sum(len(p.jobs) for p in plans)
    print(f"== checking the data of {n_jobs} jobs in {len(plans)} sweep(s)", flush=True)
    problems = check_data(plans)
    if problems:
        print("error: the sweep's data is not usable; nothing was started:", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        return 2

    for d in {p.directory for p in plans}:
        if d.exists():
            shutil.rmtree(d)  # a stale run must not leak into the table
    failures: dict[str, dict] = {}
    broken: list[str] = []
    for plan in plans:
        rc, failed = run_sweep(plan)
        failures.update((f["dir"], f) for f in failed)
        if rc != 0 and not failed:
            broken.append(f"{plan.sweep.title} exited with code {rc}")

    py = sys.executable
    sweep_root = Path(os.path.commonpath([str(p.directory) for p in plans]))
    if any(sweep_root.rglob("summary.json")):
        if step("collect", [py, "experiments/collect.py", "--sweep", str(sweep_root), "--out", str(args.out)]):
            broken.append("collect failed")
        elif step("shard throughput (Fig. 3b)", [py, "experiments/shard_throughput.py", "--out", str(args.out)]):
            broken.append("shard throughput failed")
        elif step("figures", [py, "experiments/figures.py", "--results", str(args.out)]):
            broken.append("figures failed")
    else:
        broken.append("no job succeeded: nothing to collect")

    if failures or broken:
        print("", file=sys.stderr)
        if failures:
            print(format_failures(sorted(failures.values(), key=lambda f: f["dir"])), file=sys.stderr)
        for b in broken:
            print(f"error: {b}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    with sigterm_as_exit():
        sys.exit(main())
