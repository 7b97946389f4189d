import pytest

from mosaic.profiles import load_profiles


@pytest.fixture(scope="session")
def profiles():
    return load_profiles("moa6_a100")
