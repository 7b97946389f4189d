"""Shared test helpers: compose the real Hydra config with overrides; skip what needs ../shared."""
from pathlib import Path

import pytest

from mosaic.run.builder import compose

# The real question sets and traces beside the checkout (CI has them; a fresh clone may not).
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data not present")


def config(*overrides: str):
    """The config `experiments/run.py OVERRIDES` runs with."""
    return compose(overrides)
