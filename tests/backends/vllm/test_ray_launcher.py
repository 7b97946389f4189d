"""backend.options.launcher=ray (mosaic/backends/vllm/ray_launcher.py): a Ray actor per worker on a private
local Ray, the same contract as the local launcher: one result per worker, progress streamed, a dead
or hung actor reported as that worker's failure, nothing left running. Fake workers here; the real
engines' run is in test_vllm_engines.py."""
import pytest

from mosaic.core.errors import ConfigError
from tests import fake_workers

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow   # a Ray instance starts per test (seconds)

from mosaic.backends.vllm.ray_launcher import RayLauncher  # noqa: E402


@pytest.fixture(autouse=True)
def end_fake_engines(tmp_path):
    """The fakes start a stand-in engine process; a real vLLM engine core dies with its actor (vLLM
    sets a parent-death signal), these do not, so the test ends them."""
    import json
    import os
    import signal
    yield
    for f in tmp_path.glob("*.json"):
        try:
            os.kill(json.loads(f.read_text())["engine"], signal.SIGKILL)
        except (OSError, ValueError, KeyError):
            pass


def specs(tmp_path, n):
    return [{"worker": w, "pid_file": str(tmp_path / f"{w}.json"), "env": {"MOSAIC_TEST": "1"}} for w in range(n)]


def test_results_and_progress_come_back_and_ray_is_shut_down(tmp_path):
    seen = []
    results = RayLauncher(target=fake_workers.report_progress).run(specs(tmp_path, 2), 120, seen.append)
    assert [r["records"] for r in results] == [[{"request_id": "r"}]] * 2 and not any(r["fatal"] for r in results)
    assert sorted((m["worker"], m["progress"]) for m in seen) == [(0, 1), (0, 2), (1, 1), (1, 2)]
    assert not ray.is_initialized()   # the private instance ended with the run


def test_a_dead_actor_is_its_workers_failure(tmp_path):
    (r,) = RayLauncher(target=fake_workers.crash).run(specs(tmp_path, 1), 120)
    assert r["records"] == [] and "Ray actor died" in r["fatal"]


def test_a_hung_actor_is_ended_at_the_timeout(tmp_path):
    (r,) = RayLauncher(target=fake_workers.hang).run(specs(tmp_path, 1), 8)
    assert "did not finish within 8 s" in r["fatal"]
    assert not ray.is_initialized()


def test_more_than_the_cluster_holds_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot place 1 workers"):
        # a private instance offers the CPUs asked for, but this host has no GPU to offer
        RayLauncher(gpus_per_worker=1, ready_timeout_s=5).run(specs(tmp_path, 1), 60)
    assert not ray.is_initialized()


def test_settings_are_checked():
    with pytest.raises(ConfigError, match="ray_cpus_per_worker must be a number >= 0"):
        RayLauncher(cpus_per_worker=-1)
    with pytest.raises(ConfigError, match="ray_address"):
        RayLauncher(address=3)


def test_a_ray_launcher_is_started_only_where_the_user_chose_its_address():
    from mosaic.backends.vllm.backend import make_launcher

    with pytest.raises(ConfigError, match="needs backend.options.ray_address: 'local' starts a private Ray"):
        make_launcher("ray", 1.0, None, 1.0, 0.0)
    assert make_launcher("ray", 1.0, "local", 1.0, 0.0).address is None   # the private instance
    assert make_launcher("ray", 1.0, "auto", 1.0, 0.0).address == "auto"


def test_an_address_with_no_cluster_is_one_clear_error(monkeypatch):
    """ray_address=auto with no Ray running: Ray's ConnectionError was an unexpected error (exit 1,
    traceback)."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    if ray.is_initialized():
        ray.shutdown()
    with pytest.raises(ConfigError, match=r"backend.options.ray_address=auto: no Ray cluster answered there .*"
                                          r"ray start --head"):
        RayLauncher("auto")._init(1)
