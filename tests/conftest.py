import os

import pytest
from hypothesis import HealthCheck, settings

from mosaic.profiles import load_profiles

# Every run explores the same examples: no example database carried between runs (it replays
# whatever an earlier run happened to fail on), examples derived from each test, not from a
# random seed, and no deadlines or speed health checks on a machine shared with other jobs.
# Two profiles: "dev" (the default; fewer examples, so the fast suite stays fast) and "ci" (the
# library's default example count), chosen by CI=true or HYPOTHESIS_PROFILE.
_COMMON = dict(database=None, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=25, **_COMMON)
settings.register_profile("ci", **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") == "true" else "dev"))


@pytest.fixture(scope="session")
def profiles():
    return load_profiles("moa6_a100")


@pytest.fixture
def without_vllm(monkeypatch):
    """As on a machine where vLLM is not installed (the README's test install, `.[test]`, has none):
    the backend's install check (mosaic/backends/vllm/backend.py require_vllm) finds no vLLM."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name.split(".")[0] == "vllm" else real(name, *a, **k))
