"""Shared test helpers: compose the real Hydra config with overrides; skip what needs ../shared."""
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from mosaic.config.schema import register_configs

CONF = str(Path(__file__).resolve().parents[1] / "conf")
# The real question sets and traces beside the checkout (CI has them; a fresh clone may not).
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data not present")
register_configs()


def config(*overrides: str):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))
