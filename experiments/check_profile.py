"""Does a profile still describe this machine? Re-measures a few of the profiler's own batches.

    python experiments/check_profile.py                                   # tiny_cpu, every model
    python experiments/check_profile.py "model=[Exaone,LlamaR1]" tolerance=0.05 out=check.json
    python experiments/check_profile.py busy=1      # worker 0 alone, the other idle: how much faster alone

Exit 0: the profile matches (every model within `tolerance`); 1: it does not (re-profile, the
command is printed); 2: a bad setting. Options: mosaic/conf/check_profile.yaml. Method:
mosaic/fidelity/profile_check.py.
"""
import json
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from mosaic.core.errors import ConfigError
from mosaic.run.builder import CONF_DIR
from mosaic.cli.precheck import check_tool_args, drop_refused_tool_dir
from mosaic.core.rundir import RunDirError, check_writable_file
from mosaic.fidelity.profile_check import check_profile, report


@hydra.main(version_base="1.3", config_path="../mosaic/conf", config_name="check_profile")
def main(cfg: DictConfig) -> None:
    try:
        if cfg.out:   # before the minutes of measuring, not after them
            check_writable_file(Path(cfg.out), "out")
        result = check_profile(OmegaConf.to_container(cfg, resolve=True))
    except (ConfigError, RunDirError) as e:
        print(f"error: {e}", file=sys.stderr)
        drop_refused_tool_dir()
        sys.exit(2)
    print(report(result), end="")
    if cfg.out:
        Path(cfg.out).write_text(json.dumps(result, indent=1) + "\n")
    sys.exit(0 if result["matches"] else 1)


if __name__ == "__main__":
    check_tool_args(CONF_DIR, "check_profile", sys.argv[1:])
    main()
