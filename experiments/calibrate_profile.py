"""Calibrate a profile to this machine in minutes: a few of the profiler's own batches per model,
then the profile with its step costs, load and start-up times scaled by them.

    python experiments/calibrate_profile.py                      # tiny_cpu, every model
    python experiments/calibrate_profile.py profile=mosaic/profiles/data/tiny_cpu_confined.yaml \
        backend.options.cpu_confine=always calibrated=outputs/profiles/mine.yaml
    mosaic run workload.profiles=outputs/profiles/mine.yaml ...  # then simulate this machine

Exit 0: written; 2: a bad setting. Options: mosaic/conf/calibrate_profile.yaml. Method:
mosaic/profiles/calibration.py (what is scaled), mosaic/fidelity/profile_check.py (what is timed).
"""
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from mosaic.core.errors import ConfigError
from mosaic.run.builder import CONF_DIR
from mosaic.cli.precheck import check_tool_args, drop_refused_tool_dir
from mosaic.core.rundir import RunDirError, check_writable_file
from mosaic.fidelity.calibrate import calibrate, calibrated_path, summary


@hydra.main(version_base="1.3", config_path="../mosaic/conf", config_name="calibrate_profile")
def main(cfg: DictConfig) -> None:
    options = OmegaConf.to_container(cfg, resolve=True)
    try:
        check_writable_file(calibrated_path(options), "calibrated")   # before the minutes of measuring
        if cfg.out:
            check_writable_file(Path(cfg.out), "out")
        check, target = calibrate(options)
    except (ConfigError, RunDirError) as e:
        print(f"error: {e}", file=sys.stderr)
        drop_refused_tool_dir()
        sys.exit(2)
    print(summary(check, target), end="")
    if cfg.out:
        import json
        Path(cfg.out).write_text(json.dumps(check, indent=1) + "\n")


if __name__ == "__main__":
    check_tool_args(CONF_DIR, "calibrate_profile", sys.argv[1:])
    main()
