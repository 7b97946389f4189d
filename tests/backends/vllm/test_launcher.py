"""No engine outlives its run: worker processes and the children they start (vLLM's EngineCore) are
ended however the run ends. Fake workers (tests/fake_workers.py) start a real child process each."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests import fake_workers
from mosaic.backends.vllm.launcher import LocalProcessLauncher
from mosaic.backends.vllm.procgroup import group_members, pid_alive

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="process checks read /proc (Linux)")


def pids(pid_dir: Path, n: int, wait_s: float = 60.0) -> list[int]:
    """Worker and engine pids of n workers, once they have all written them."""
    deadline = time.monotonic() + wait_s
    files = [pid_dir / f"{w}.json" for w in range(n)]
    while not all(f.is_file() and f.stat().st_size for f in files):
        if time.monotonic() > deadline:
            raise AssertionError(f"workers did not start within {wait_s} s")
        time.sleep(0.1)
    return [p for f in files for p in json.loads(f.read_text()).values()]



def wait_gone(ps: list[int], wait_s: float) -> list[int]:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        alive = [p for p in ps if pid_alive(p)]
        if not alive:
            return []
        time.sleep(0.1)
    return [p for p in ps if pid_alive(p)]


def specs(tmp_path: Path, n: int, **extra) -> list[dict]:
    return [{"worker": w, "pid_file": str(tmp_path / f"{w}.json"), **extra} for w in range(n)]


@pytest.mark.slow
def test_timeout_ends_workers_and_their_engines(tmp_path):
    results = LocalProcessLauncher(fake_workers.hang, grace_s=2, poll_s=0.2).run(specs(tmp_path, 2), timeout_s=4)
    assert [r["fatal"] for r in results] == ["worker 0 did not finish within 4 s", "worker 1 did not finish within 4 s"]
    ps = pids(tmp_path, 2, wait_s=0)
    assert not [p for p in ps if pid_alive(p)]  # gone when run() returns, not eventually
    assert not group_members(*ps)


def test_dead_worker_is_reported_and_its_engine_ended(tmp_path):
    t0 = time.monotonic()
    (r,) = LocalProcessLauncher(fake_workers.crash, grace_s=2, poll_s=0.2).run(specs(tmp_path, 1), timeout_s=120)
    assert r["fatal"] == "worker process 0 exited with code 3 without reporting"
    assert time.monotonic() - t0 < 60  # noticed when it died, not at the timeout
    assert not [p for p in pids(tmp_path, 1, wait_s=0) if pid_alive(p)]


@pytest.mark.slow
def test_engine_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path):
    t0 = time.monotonic()
    (r,) = LocalProcessLauncher(fake_workers.finish_leaking, grace_s=1.5, poll_s=0.2).run(
        specs(tmp_path, 1, stubborn=True), timeout_s=120)
    assert r["fatal"] is None
    worker, engine = pids(tmp_path, 1, wait_s=0)
    assert not pid_alive(engine) and not pid_alive(worker)
    assert time.monotonic() - t0 >= 1.5  # it was given the grace period before SIGKILL


def test_a_ctrl_c_swallowed_before_the_wait_still_ends_the_workers(tmp_path, monkeypatch):
    """The flag the SIGINT handler sets stops the wait where the KeyboardInterrupt itself was lost
    (a library's bare except while workers were spawned): before, the run waited on hung workers."""
    from mosaic.core import interrupts

    def press_once_started():
        pids(tmp_path, 2)
        monkeypatch.setattr(interrupts, "_interrupted", True)

    threading.Thread(target=press_once_started, daemon=True).start()
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        LocalProcessLauncher(fake_workers.hang, grace_s=2, poll_s=0.2).run(specs(tmp_path, 2), timeout_s=300)
    assert time.monotonic() - t0 < 120
    assert not [p for p in pids(tmp_path, 2, wait_s=0) if pid_alive(p)]


def _drive(tmp_path: Path, target: str, n: int, grace_s: float = 2.0) -> subprocess.Popen:
    code = (f"from tests.fake_workers import drive; drive({target!r}, {n}, {str(tmp_path)!r}, {grace_s})")
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, -signal.SIGINT), (signal.SIGTERM, 143)])
def test_interrupted_run_leaves_no_process_behind(tmp_path, sig, code):
    run = _drive(tmp_path, "hang", 2)
    ps = pids(tmp_path, 2)
    for worker in ps[::2]:
        # Its own session: a terminal's Ctrl-C reaches only the launcher, which ends the groups itself.
        assert os.getsid(worker) == worker != os.getsid(run.pid)
    assert {int(Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[2]) for p in ps[1::2]} == set(ps[::2])
    run.send_signal(sig)
    _, err = run.communicate(timeout=60)
    assert run.returncode == code, err
    assert not [p for p in ps if pid_alive(p)], "a worker or engine outlived the run"


@pytest.mark.slow
def test_killed_launcher_leaves_no_process_behind(tmp_path):
    # SIGKILL runs no cleanup in the launcher: the kernel's parent-death signal makes each worker
    # end its own group.
    run = _drive(tmp_path, "hang", 2, grace_s=1.0)
    ps = pids(tmp_path, 2)
    run.kill()
    run.communicate(timeout=30)
    assert not wait_gone(ps, wait_s=15), "a worker or engine outlived a killed launcher"


@pytest.mark.slow
def test_progress_messages_stream_to_the_callback_and_are_not_results(tmp_path):
    seen = []
    results = LocalProcessLauncher(fake_workers.report_progress, grace_s=1, poll_s=0.2).run(
        specs(tmp_path, 2), timeout_s=120, on_progress=seen.append)
    assert [r["records"] for r in results] == [[{"request_id": "r"}]] * 2
    assert sorted((m["worker"], m["progress"]) for m in seen) == [(0, 1), (0, 2), (1, 1), (1, 2)]
    # A worker that streamed progress and then died is still a failure, not a finished worker.
    seen.clear()
    (r,) = LocalProcessLauncher(fake_workers.die_after_progress, grace_s=1, poll_s=0.2).run(
        specs(tmp_path, 1), timeout_s=120, on_progress=seen.append)
    assert r["fatal"] and "exited with code 3" in r["fatal"] and seen == [{"worker": 0, "progress": 1}]


@pytest.mark.slow
def test_a_worker_dying_mid_message_holds_up_no_other(tmp_path):
    """Before: one queue for all workers, whose write lock died with worker 0 (writing its message):
    worker 1's report never came and it failed at the timeout ("did not finish within 20 s")."""
    seen = []
    results = LocalProcessLauncher(fake_workers.die_mid_message_or_report, grace_s=1, poll_s=0.2).run(
        specs(tmp_path, 2), timeout_s=20, on_progress=seen.append)
    assert "exited with code 3" in results[0]["fatal"] and not seen   # a cut message is not read
    assert results[1] == {"worker": 1, "sessions": [], "records": [{"request_id": "r"}], "fatal": None}
