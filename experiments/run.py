"""Run one MoA workload end to end: `python experiments/run.py scheduler=ilp backend=sim`.

Outputs and exit codes: mosaic/run/cli.py (and the README). Before Hydra runs, the command line is
checked (cli.hydra_prepared): Hydra's own config errors are one line and exit status 2, and the
run directory is claimed so that no second run writes into it.
"""
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from mosaic.config.schema import register_configs
from mosaic.run.builder import CONF_DIR
from mosaic.run.cli import hydra_prepared, run_job
from mosaic.run.jobs import sigterm_as_exit

register_configs()


@hydra.main(version_base="1.3", config_path="../mosaic/conf", config_name="config")
def main(cfg: DictConfig) -> None:
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    # SIGTERM unwinds like Ctrl-C, through the vLLM launcher's cleanup of its worker process groups.
    with sigterm_as_exit():
        code = run_job(cfg, Path(hc.runtime.output_dir), list(hc.overrides.task), multirun)
    if code:
        sys.exit(code)


if __name__ == "__main__":
    with sigterm_as_exit():  # the sweep's main process too: joblib then stops its workers' jobs
        with hydra_prepared(sys.argv[1:], CONF_DIR, Path(__file__).stem) as args:
            sys.argv[1:] = args
            main()
