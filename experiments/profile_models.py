"""Measure models on the real engine and write a profile file backend=sim can use.

    python experiments/profile_models.py model=LlamaR1            # one model of models=tiny
    python experiments/profile_models.py model=all out=mosaic/profiles/data/tiny_cpu.yaml
    python experiments/profile_models.py model=[LlamaR1,QwenR1] out=mosaic/profiles/data/tiny_cpu.yaml
        # re-measure some models of an existing profile; its other models keep their entries

Options: mosaic/conf/profile.yaml. Method: mosaic/fitting/real_engine.py.
"""
import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from mosaic.core.errors import ConfigError
from mosaic.run.builder import CONF_DIR
from mosaic.cli.precheck import check_tool_args, drop_refused_tool_dir
from mosaic.fitting.real_engine import profile_models


@hydra.main(version_base="1.3", config_path="../mosaic/conf", config_name="profile")
def main(cfg: DictConfig) -> None:
    try:
        out = profile_models(OmegaConf.to_container(cfg, resolve=True))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        drop_refused_tool_dir()
        sys.exit(2)
    print(f"wrote {out}")


if __name__ == "__main__":
    check_tool_args(CONF_DIR, "profile", sys.argv[1:])
    main()
