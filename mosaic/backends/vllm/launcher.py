"""How worker processes are started. Local processes today; a launcher on Ray actors for clusters
of several nodes only has to implement `run` with the same contract.

Every worker runs in a process group of its own (see procgroup.py), and `run` ends every group it
started before it returns or raises: after a normal finish, a timeout, a dead worker, Ctrl-C, or
SIGTERM once `mosaic.cli.signals.sigterm_as_exit` has turned it into an exception.
"""
from __future__ import annotations

import queue as queue_mod
import time
from typing import Any, Callable, Protocol

from mosaic.core.interrupts import raise_if_interrupted
from mosaic.backends.vllm.channels import WorkerChannels
from mosaic.backends.vllm.procgroup import DEFAULT_GRACE_S, end_processes, group_leader_entry, spawn_context
from mosaic.backends.vllm.worker import worker_main

WorkerTarget = Callable[[dict[str, Any], Any], None]


ProgressCallback = Callable[[dict[str, Any]], None]


class Launcher(Protocol):
    def run(self, specs: list[dict[str, Any]], timeout_s: float,
            on_progress: ProgressCallback | None = None) -> list[dict[str, Any]]:
        """Run one worker per spec, concurrently; return one result message per spec (a worker that
        died returns a message with `fatal` set and whatever it had finished). Messages a worker
        sends before its result ({"worker", "progress": finished requests}) go to `on_progress`."""


def failed_worker(worker: int, why: str) -> dict[str, Any]:
    return {"worker": worker, "sessions": [], "records": [], "fatal": why}


class LocalProcessLauncher:
    """One spawned process per worker on this host.

    `target(spec, queue)` is what a worker runs (mosaic.backends.vllm.worker.worker_main; tests pass a fake
    that starts children of its own); it must put exactly one result message on `queue`.
    `grace_s` is how long a worker's group gets between SIGTERM and SIGKILL."""

    def __init__(self, target: WorkerTarget = worker_main, grace_s: float = DEFAULT_GRACE_S, poll_s: float = 1.0):
        self.target, self.grace_s, self.poll_s = target, grace_s, poll_s

    def run(self, specs: list[dict[str, Any]], timeout_s: float,
            on_progress: ProgressCallback | None = None) -> list[dict[str, Any]]:
        ctx = spawn_context()
        q = WorkerChannels()   # a pipe per worker: one that dies mid-message blocks no other
        procs: dict[int, Any] = {}
        results: dict[int, dict[str, Any]] = {}
        try:
            for s in specs:
                p = ctx.Process(target=group_leader_entry, args=(self.grace_s, self.target, s, q.open(ctx)),
                                name=f"mosaic-worker-{s['worker']}")
                p.start()
                q.started()
                procs[s["worker"]] = p
            deadline = time.monotonic() + timeout_s
            while len(results) < len(specs) and time.monotonic() < deadline:
                raise_if_interrupted()   # a Ctrl-C that came while spawning, and was swallowed there
                try:
                    msg = q.get(timeout=min(self.poll_s, max(0.01, deadline - time.monotonic())))
                    self._take(msg, results, on_progress)
                except queue_mod.Empty:
                    self._collect_dead(procs, results, q, on_progress)
            for w in procs:
                if w not in results:
                    results[w] = failed_worker(w, f"worker {w} did not finish within {timeout_s:.0f} s")
        finally:
            # Also on KeyboardInterrupt / SystemExit: no worker group, and so no engine, survives run().
            self._end_all(procs, results)
            q.close()
        return [results[s["worker"]] for s in specs]

    @staticmethod
    def _take(msg: dict[str, Any], results: dict[int, dict[str, Any]], on_progress: ProgressCallback | None) -> None:
        if "progress" in msg:
            if on_progress is not None:
                on_progress(msg)
        else:
            results[msg["worker"]] = msg

    def _collect_dead(self, procs, results, q, on_progress: ProgressCallback | None = None) -> None:
        """A worker that died without reporting: its message, if it sent one just before dying, is
        already in the pipe; otherwise it failed, and whatever it left running is ended now."""
        dead = [w for w, p in procs.items() if w not in results and not p.is_alive()]
        if not dead:
            return
        while True:
            try:
                msg = q.get_nowait()
            except queue_mod.Empty:
                break
            self._take(msg, results, on_progress)
        for w in dead:
            if w not in results:
                results[w] = failed_worker(w, f"worker process {w} exited with code {procs[w].exitcode} "
                                        "without reporting")
                self._end([procs[w]], wait_s=0.0)

    def _end(self, procs: list, wait_s: float) -> None:
        """Give workers `wait_s` (in all) to exit by themselves, then end their process groups."""
        end_processes(procs, wait_s, self.grace_s)

    def _end_all(self, procs: dict[int, Any], results: dict[int, dict[str, Any]]) -> None:
        # Workers that reported are finishing on their own (engines already shut down): they get the
        # grace period first. The others are ended at once.
        done = [p for w, p in procs.items() if w in results and not results[w].get("fatal")]
        self._end(done, wait_s=self.grace_s)
        self._end([p for p in procs.values() if p not in done], wait_s=0.0)
