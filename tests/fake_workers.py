"""Stand-ins for mosaic.backends.vllm.worker.worker_main that behave like a worker with an engine: each
starts a child process (as vLLM starts EngineCore) and records both pids, then misbehaves in its
own way. Spawned processes import them from here, so they live in a module, not in a test file."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# The child says it is ready (its signal disposition set) by writing to the file named in argv[1].
# A stubborn one ignores SIGTERM, like an engine stuck in a kernel: only SIGKILL ends it.
ENGINE = ("import pathlib, signal, sys, time\n"
          "if sys.argv[2] == 'stubborn': signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
          "pathlib.Path(sys.argv[1]).write_text('ready')\n"
          "time.sleep(600)")


def _start_engine(spec: dict[str, Any]) -> None:
    ready = Path(spec["pid_file"] + ".ready")
    child = subprocess.Popen([sys.executable, "-c", ENGINE, str(ready),
                              "stubborn" if spec.get("stubborn") else "obedient"])
    while not ready.exists():
        time.sleep(0.02)
    Path(spec["pid_file"]).write_text(json.dumps({"worker": os.getpid(), "engine": child.pid}))


def hang(spec: dict[str, Any], queue) -> None:
    """Never reports (a long run, a hung engine)."""
    _start_engine(spec)
    time.sleep(600)


def crash(spec: dict[str, Any], queue) -> None:
    """Dies without reporting and without stopping its engine (a segfault, the OOM killer)."""
    _start_engine(spec)
    time.sleep(0.5)
    os._exit(3)


def finish_leaking(spec: dict[str, Any], queue) -> None:
    """Reports normally but leaves its engine running (a shutdown that did not happen)."""
    _start_engine(spec)
    queue.put({"worker": spec["worker"], "sessions": [], "records": [], "fatal": None})


def report_progress(spec: dict[str, Any], queue) -> None:
    """Streams progress as it goes (two requests, then one), then reports its result."""
    for n in (2, 1):
        queue.put({"worker": spec["worker"], "progress": n})
    queue.put({"worker": spec["worker"], "sessions": [], "records": [{"request_id": "r"}], "fatal": None})


def die_after_progress(spec: dict[str, Any], queue) -> None:
    """Streams progress, then dies without reporting: the progress must not count as its result."""
    queue.put({"worker": spec["worker"], "progress": 1})
    time.sleep(0.5)
    os._exit(3)


def die_mid_message_or_report(spec: dict[str, Any], queue) -> None:
    """Worker 0 dies in the middle of writing a message, as an engine killed while it reports: with
    a queue shared by every worker, holding its write lock (as the queue's feeder thread does while
    it writes); with a pipe of its own, half a message written. The others report after it is gone."""
    import struct

    if spec["worker"] == 0:
        lock = getattr(queue, "_wlock", None)
        if lock is not None:
            lock.acquire()
        else:
            os.write(queue.conn.fileno(), struct.pack("!i", 1 << 20) + b"x" * 1000)
        os._exit(3)
    time.sleep(1.0)
    queue.put({"worker": spec["worker"], "sessions": [], "records": [{"request_id": "r"}], "fatal": None})


def drive(target: str, n_workers: int, pid_dir: str, grace_s: float, timeout_s: float = 600.0) -> None:
    """What experiments/run.py does around the launcher, for tests that signal a whole run."""
    import tests.fake_workers as fakes
    from mosaic.cli.signals import sigterm_as_exit
    from mosaic.backends.vllm.launcher import LocalProcessLauncher

    specs = [{"worker": w, "pid_file": f"{pid_dir}/{w}.json"} for w in range(n_workers)]
    with sigterm_as_exit():
        LocalProcessLauncher(getattr(fakes, target), grace_s=grace_s, poll_s=0.2).run(specs, timeout_s)
