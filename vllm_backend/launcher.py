"""How worker processes are started. Local processes today; a launcher on Ray actors for clusters
of several nodes only has to implement `run` with the same contract."""
from __future__ import annotations

import multiprocessing as mp
import queue as queue_mod
import time
from typing import Any, Protocol

from vllm_backend.worker import worker_main


class Launcher(Protocol):
    def run(self, specs: list[dict[str, Any]], timeout_s: float) -> list[dict[str, Any]]:
        """Run one worker per spec, concurrently; return one result message per spec (a worker that
        died returns a message with `fatal` set and whatever it had finished)."""


class LocalProcessLauncher:
    def run(self, specs: list[dict[str, Any]], timeout_s: float) -> list[dict[str, Any]]:
        ctx = mp.get_context("spawn")  # vLLM and CUDA do not survive fork
        q = ctx.Queue()
        procs = {s["worker"]: ctx.Process(target=worker_main, args=(s, q), name=f"mosaic-worker-{s['worker']}")
                 for s in specs}
        for p in procs.values():
            p.start()
        results: dict[int, dict[str, Any]] = {}
        deadline = time.time() + timeout_s
        while len(results) < len(specs) and time.time() < deadline:
            try:
                msg = q.get(timeout=1.0)
                results[msg["worker"]] = msg
            except queue_mod.Empty:
                for w, p in procs.items():
                    if w not in results and not p.is_alive() and p.exitcode not in (0, None):
                        results[w] = {"worker": w, "sessions": [], "records": [],
                                      "fatal": f"worker process {w} exited with code {p.exitcode}"}
        for w, p in procs.items():
            if w not in results:
                p.kill()
                results[w] = {"worker": w, "sessions": [], "records": [],
                              "fatal": f"worker {w} did not finish within {timeout_s:.0f} s"}
            p.join(timeout=30)
        return [results[s["worker"]] for s in specs]
