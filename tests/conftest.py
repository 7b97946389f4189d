import pytest
from hypothesis import HealthCheck, settings

from mosaic.profiles import load_profiles

# Every run explores the same examples: no example database carried between runs (it replays
# whatever an earlier run happened to fail on), examples derived from each test, not from a
# random seed, and no deadlines or speed health checks on a machine shared with other jobs.
settings.register_profile("mosaic", database=None, derandomize=True, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("mosaic")


@pytest.fixture(scope="session")
def profiles():
    return load_profiles("moa6_a100")
