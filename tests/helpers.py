"""Shared test helpers: compose the real Hydra config with overrides."""
from pathlib import Path

from hydra import compose, initialize_config_dir

from mosaic.config import register_configs

CONF = str(Path(__file__).resolve().parents[1] / "conf")
register_configs()


def config(*overrides: str):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))
