"""The paper's reproduction: check data -> sweeps -> collect -> figures (`python experiments/reproduce.py`).

Before any job starts, every workload the sweeps use is built once, so a missing or unreadable
question or trace file stops the run at once with the path and the config field to set. A job that
fails records error.json in its directory and the others go on (see mosaic/core/rundir.py); what succeeded
is still collected, then the failed jobs are listed with their overrides and errors, and the exit
status is 1. Progress: the joblib launcher prints each batch of finished jobs.

Each sweep is a Hydra multirun of experiments/run.py in its own process; the steps after them
(collect, Fig. 3b shard throughput, the stage wall inversion, the figures) run here, in turn.
"""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from mosaic.analysis import figures, shard_throughput, wall_inversion
from mosaic.analysis.collect import collect
from mosaic.config.schema import register_configs
from mosaic.core.errors import ConfigError
from mosaic.core.progress import bar
from mosaic.run.builder import CONF_DIR
from mosaic.cli.hydra_args import expand_sweep
from mosaic.core.rundir import find_failures, format_failures, one_line, run_folders

ROOT = Path(__file__).resolve().parents[2]   # the repository: experiments/, mosaic/conf/, multirun/

# Sweep axes that cannot change which data a workload reads: left out of the data check.
NOT_DATA = ("scheduler", "aggregation", "seed", "backend", "cluster", "hydra")


@dataclass(frozen=True)
class Sweep:
    """One Hydra multirun into <sweep root>/<folder>: a config under mosaic/conf/ whose
    hydra.sweeper.params give the grid, plus overrides of its own. Every sweep also gets the command
    line's overrides."""
    folder: str
    config_name: str
    overrides: tuple[str, ...] = ()


# The paper's experiment, the other policies, then one small multirun per variant so the grid stays
# small. The collector tells them apart by the `settings` each run records, not by folder.
SWEEPS: tuple[Sweep, ...] = (
    Sweep("main", "paper_sweep"),                      # ilp (K=2) + round_robin, 6 workloads, 3 taus, seeds 0-2
    Sweep("policies", "paper_sweep_policies"),         # fifo, least_loaded, data_parallel at tau=2/3
    Sweep("routing_paper_table3", "paper_sweep_table3"),
    Sweep("K", "paper_sweep_k"),                       # K = 3 and no limit (ilp only)
    Sweep("placement_scheduled", "paper_sweep_placement"),
    Sweep("rr_order_pool", "paper_sweep_rr_pool"),
    Sweep("replacement_false", "paper_sweep_no_replacement"),
    Sweep("coupling_assumed", "paper_sweep_coupling"),
    Sweep("shard_affine", "paper_sweep_shard"),        # ilp with scheduler.shard_cost=affine (not the paper's)
)
SWEEP_ROOT = ROOT / "multirun" / "paper"


@dataclass(frozen=True)
class SweepPlan:
    sweep: Sweep
    overrides: tuple[str, ...]       # the sweep's own, then the command line's
    jobs: tuple[tuple[str, ...], ...]  # each job's overrides, as the basic sweeper will expand them
    directory: Path                  # <sweep root>/<folder>


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def plan_sweep(sweep: Sweep, extra: list[str], root: Path = SWEEP_ROOT) -> SweepPlan:
    """Expand a sweep into its jobs the way Hydra's basic sweeper does (sweeper.params, then the
    overrides; a later value for a key replaces the earlier one). A key in `extra` replaces the
    sweep's own value for it (the run command refuses a key given twice on one command line)."""
    given = {_key(o) for o in extra}
    overrides = (*(o for o in sweep.overrides if _key(o) not in given), *extra)
    parser = OverridesParser.create()
    parsed = parser.parse_overrides(list(overrides))
    plain = [o.input_line for o in parsed if not o.is_sweep_override()]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name=sweep.config_name, overrides=plain, return_hydra_config=True)
    params = [f"{k}={v}" for k, v in (OmegaConf.to_container(cfg.hydra.sweeper.params) or {}).items()]
    jobs = expand_sweep(parser.parse_overrides(params + list(overrides)))
    return SweepPlan(sweep, overrides, tuple(tuple(j) for j in jobs), root.resolve() / sweep.folder)


def check_data(plans: list[SweepPlan]) -> list[str]:
    """Check every job's settings, and build every distinct workload the sweeps' jobs use, once:
    the question and trace files must exist and parse. Returns one line per problem (empty: all
    good)."""
    from mosaic.profiles import load_profiles
    from mosaic.workload.build import build_workload

    from mosaic.run.builder import typed

    problems, seen = [], set()
    # A setting the command line gives every sweep fails each of them the same way: one line,
    # naming the sweeps, instead of one per sweep.
    settings: dict[str, tuple[int, list[str]]] = {}   # message -> (its line in problems, where)
    for plan in plans:
        # Every job's settings as the job will check them first: a bad setting the command line
        # gives every job (+foo=1) would otherwise fail each of them in turn.
        # Jobs that differ only in their seed are checked once (composing takes ~0.1 s a job).
        by_settings = {tuple(o for o in job if _key(o) != "seed"): job for job in reversed(plan.jobs)}
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            bad = []
            for job in reversed(by_settings.values()):
                try:
                    typed(compose(config_name=plan.sweep.config_name, overrides=list(job)))
                except ConfigError as e:
                    bad.append((job, e))
                except Exception as e:  # noqa: BLE001 - Hydra's composition errors share no base with ours
                    bad.append((job, f"{type(e).__name__}: {' '.join(str(e).split())}"))
        if bad:
            job, e = bad[0]
            if str(e) not in settings:
                settings[str(e)] = (len(problems), [])
                problems.append("")   # written below, once every sweep that shares it is known
            settings[str(e)][1].append(f"{plan.sweep.folder}, {' '.join(job)} ({len(bad)} of {len(by_settings)} "
                                    "settings of its jobs)")
            continue
        variants = {tuple(o for o in job if not _key(o).startswith(NOT_DATA)) for job in plan.jobs}
        for variant in sorted(variants):
            where = f"sweep {plan.sweep.folder}, {' '.join(variant) or 'defaults'}"
            try:
                with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
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
    for message, (i, where) in settings.items():
        also = f"; the same in sweep(s) {', '.join(w.split(',')[0] for w in where[1:])}" if len(where) > 1 else ""
        problems[i] = f"sweep {where[0]}: {message}{also}"
    return problems


def step(title: str, cmd: list[str], tick: Callable[[], None] | None = None) -> int:
    """Run one command; return its exit status. SIGTERM here is passed on to it (Ctrl-C reaches it
    from the terminal directly), and it is waited for, so no sweep goes on running unseen. tick()
    is called every 2 s while it runs (progress)."""
    print(f"\n== {title}: {' '.join(cmd)}", flush=True)
    t0 = time.perf_counter()
    with subprocess.Popen(cmd, cwd=ROOT) as p:
        try:
            while True:
                try:
                    rc = p.wait(timeout=2.0)
                    break
                except subprocess.TimeoutExpired:
                    if tick is not None:
                        tick()
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


def jobs_ended(directory: Path) -> int:
    """Jobs of a sweep that have ended: a summary.json or an error.json in their folder."""
    return run_folders(directory)


def run_sweep(plan: SweepPlan, progress: Any = None) -> tuple[int, list[dict]]:
    """Run one multirun; returns its exit status and its failed jobs (error.json records).
    progress: a bar over jobs (mosaic.core.progress), advanced as the sweep's jobs end."""
    counted = [0]

    def tick() -> None:
        n = jobs_ended(plan.directory)
        if progress is not None and n > counted[0]:
            progress.update(n - counted[0])
            counted[0] = n

    rc = step(f"sweep {plan.sweep.folder} ({len(plan.jobs)} jobs)",
              [sys.executable, "experiments/run.py", "--config-name", plan.sweep.config_name, "-m",
               "hydra/job_logging=disabled", *plan.overrides, f"hydra.sweep.dir={plan.directory}"], tick)
    tick()
    return rc, find_failures(plan.directory)


def in_process(title: str, fn: Callable[..., Any], *args: Any) -> bool:
    """Run one step here; False (its traceback printed) when it raised. Ctrl-C and SIGTERM go on up."""
    print(f"\n== {title}", flush=True)
    t0 = time.perf_counter()
    try:
        fn(*args)
        ok = True
    except (ConfigError, FileNotFoundError) as e:   # what the step refuses: its own one-line message
        print(f"error: {one_line(str(e), 2000)}", file=sys.stderr, flush=True)
        ok = False
    except Exception:  # noqa: BLE001 - a failed step is reported, the others still run
        traceback.print_exc()
        ok = False
    sys.stdout.flush()
    print(f"== {title} {'done' if ok else 'failed'} in {time.perf_counter() - t0:.0f} s", flush=True)
    return ok


def _collect(sweep_root: Path, out: Path) -> None:
    print(collect(sweep_root, out))


def _shard_throughput(out: Path) -> None:
    print(shard_throughput.write(out))


def _invert_walls(out: Path) -> None:
    print(wall_inversion.write(out))


def reproduce(out: Path, sweep_root: Path = SWEEP_ROOT, sweeps: str = ",".join(s.folder for s in SWEEPS),
              extra: list[str] | None = None, check_only: bool = False) -> int:
    """Check the data, run the chosen sweeps (comma-separated folders of SWEEPS) with the extra
    Hydra overrides, then collect them and draw the figures into `out`. Returns the exit status:
    0 all done, 1 a job or step failed (listed on stderr), 2 bad arguments or data (nothing run)."""
    extra = list(extra or [])
    out, sweep_root = Path(out).resolve(), Path(sweep_root).resolve()  # the sweeps run in ROOT
    known = {s.folder: s for s in SWEEPS}
    chosen = [f for f in sweeps.split(",") if f]
    if not chosen or any(f not in known for f in chosen):
        print(f"error: --sweeps: choose among {', '.join(known)} (got '{sweeps}')", file=sys.stderr)
        return 2
    if sweep_root.exists() and not sweep_root.is_dir():   # found only when the first sweep failed on it
        print(f"error: --sweep-root {sweep_root} is a file, not a folder for the sweeps' runs; choose another",
              file=sys.stderr)
        return 2
    if any(o.split("=", 1)[0].lstrip("+~") == "hydra.sweep.dir" for o in extra):
        print("error: hydra.sweep.dir is set per sweep; use --sweep-root to move them all", file=sys.stderr)
        return 2
    register_configs()
    try:
        plans = [plan_sweep(known[f], extra, sweep_root) for f in chosen]
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
    print("== data OK", flush=True)
    if check_only:
        return 0

    # A stale run must not leak into the table: a full reproduction starts from an empty sweep root,
    # a partial one (--sweeps) replaces only its own sweeps' folders.
    for d in [sweep_root] if len(plans) == len(SWEEPS) else [p.directory for p in plans]:
        if d.exists():
            shutil.rmtree(d)
    failures: dict[str, dict] = {}
    broken: list[str] = []
    with bar(n_jobs, "reproduce: jobs", unit="job") as progress:
        for plan in plans:
            rc, failed = run_sweep(plan, progress)
            failures.update((f["dir"], f) for f in failed)
            if rc != 0 and not failed:
                broken.append(f"sweep {plan.sweep.folder} exited with code {rc}")

    if any(sweep_root.rglob("summary.json")):
        if not in_process("collect", _collect, sweep_root, out):
            broken.append("collect failed")
        else:
            for title, fn in (("shard throughput (Fig. 3b)", _shard_throughput),
                              ("stage wall inversion", _invert_walls), ("figures", figures.write_figures)):
                if not in_process(title, fn, out):
                    broken.append(f"{title} failed")
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
