"""Run one MoA workload end to end: `python experiments/run.py scheduler=ilp backend=sim`.

Writes summary.json, plan.json and trace.csv into Hydra's run directory (hydra.run.dir=X).
"""
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from mosaic.app import format_table, run, write_outputs
from mosaic.config import register_configs
from mosaic.errors import ConfigError

register_configs()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    try:
        out = run(cfg)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    directory = Path(HydraConfig.get().runtime.output_dir)
    write_outputs(out, directory)
    print(format_table(out.summary))
    print(f"outputs: {directory}")


if __name__ == "__main__":
    main()
