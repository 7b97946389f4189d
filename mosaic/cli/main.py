"""The `run` app: one MoA workload end to end (`mosaic run ...`, `mosaic sweep ...`,
`python experiments/run.py ...`), Hydra over mosaic/conf.

Before Hydra runs, the command line is checked (precheck.hydra_prepared): Hydra's own config errors
are one line and exit status 2, and the run directory is claimed so that no second run writes into
it. One job: job.run_job. Exit codes: docs/configuration.md. Only the command line's own modules are
imported here; the run's (solver, SciPy, backends) load when a job starts, so `--help` is quick and
a launcher's worker processes start light.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Sequence

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from mosaic.config import CONF_DIR
from mosaic.config.schema import register_configs
from mosaic.cli.job import run_job
from mosaic.cli.precheck import hydra_prepared
from mosaic.cli.signals import quiet_interrupt, sigterm_as_exit

JOB_NAME = "run"   # Hydra's job name: run.log, and the name the pre-check composes under


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def _job(cfg: DictConfig) -> None:
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    # SIGTERM unwinds like Ctrl-C, through the vLLM launcher's cleanup of its worker process groups.
    with sigterm_as_exit():
        code = run_job(cfg, Path(hc.runtime.output_dir), list(hc.overrides.task), multirun)
    if code:
        sys.exit(code)


# A sweep stopped by a signal: the joblib launcher kills its workers, and the resource trackers
# (processes of their own, started from this environment) then warn of the semaphores they clean
# up for them, a warning about their own bookkeeping the user can do nothing with.
_TRACKER_WARNINGS = ("ignore::UserWarning:multiprocessing.resource_tracker",
                     "ignore::UserWarning:joblib.externals.loky.backend.resource_tracker")


def _quiet_resource_trackers() -> None:
    given = [w for w in os.environ.get("PYTHONWARNINGS", "").split(",") if w]
    os.environ["PYTHONWARNINGS"] = ",".join([*given, *(w for w in _TRACKER_WARNINGS if w not in given)])


def main(argv: Sequence[str] | None = None) -> None:
    """Run (or, with -m, sweep) with Hydra's command line `argv` (default: sys.argv[1:])."""
    register_configs()
    _quiet_resource_trackers()
    args = list(sys.argv[1:] if argv is None else argv)
    # SIGTERM for the sweep's main process too: joblib then stops its workers' jobs.
    with quiet_interrupt(), sigterm_as_exit():
        with hydra_prepared(args, CONF_DIR, JOB_NAME) as args:
            sys.argv[1:] = args
            _job()
