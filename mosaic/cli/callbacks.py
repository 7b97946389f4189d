"""Hydra callbacks the config installs (mosaic/conf/config.yaml: hydra.callbacks)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from mosaic.core.rundir import find_failures, format_failures


class ReportFailedJobs(Callback):
    """Hydra callback (mosaic/conf/config.yaml: hydra.callbacks): after a multirun, list the jobs that
    recorded a failure and exit with status 1, so `run.py -m` does not report success."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.start = time.time() - 1.0  # file times have coarse resolution on some filesystems

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        failures = find_failures(Path(config.hydra.sweep.dir), getattr(self, "start", None))
        if failures:
            print(format_failures(failures), flush=True)
            raise SystemExit(1)
