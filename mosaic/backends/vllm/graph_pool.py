"""Real engines for agent graphs: the vLLM engine pool the graph coordinator
(mosaic/graphs/coordinator.py) drives. One spawned process per worker (its own process group, as
the session launcher's: mosaic/backends/vllm/procgroup.py) loads its model once and serves the whole run
(mosaic/backends/vllm/graph_worker.py); requests go to it through its inbox queue as the coordinator
releases them, and every request that leaves an engine comes back at once, so successors start
while the rest of the graph runs. With backend.options.launcher=ray each worker is a Ray actor
instead (mosaic/backends/vllm/ray_graph.py, imported only then) and the queues are Ray's: the same worker
loop, across machines.

Replay mode (backend.options.replay=true): a request's prompt is `prompt_tokens` token ids that share
no prefix with another's, and it generates exactly the answer model's output length (ignore_eos),
so a real run and a simulated run of one graph serve the same requests. Natural mode (replay=false):
prompts are texts (the question, then the outputs an agent reads), the model stops by itself (at
most backend.options.max_tokens, else the context left), and each output's answer is read from its
text and its confidence is the geometric mean of its tokens' probabilities (from the logprobs).
"""
from __future__ import annotations

import logging
import heapq
import itertools
import queue as queue_mod
import time
from typing import Any, Callable

from mosaic.core.errors import ConfigError
from mosaic.core.log_routing import FILE_ONLY
from mosaic.graphs.trace import Finished, is_prefill
from mosaic.profiles import ProfileSet
from mosaic.trace import SessionRecord
from mosaic.backends.vllm.backend import VllmBackend, device_env, extract_answer, prompt_ids
from mosaic.backends.vllm.channels import WorkerChannels
from mosaic.backends.vllm.graph_worker import graph_worker_main
from mosaic.backends.vllm.launcher import LocalProcessLauncher
from mosaic.backends.vllm.procgroup import end_processes, group_leader_entry, spawn_context


log = logging.getLogger(__name__)
# A crashed worker's last messages are read within this: behind the others' on Ray's shared queue,
# in its own pipe locally (mosaic/backends/vllm/channels.py), where reads take turns between the workers.
SETTLE_S = 2.0


class LocalWorkers:
    """The graph's workers as spawned processes on this host, each in a process group of its own.
    What a pool needs of its workers (RayGraphWorkers has the same): `open` (-> the queue workers
    report on), `inbox` (a worker's queue in), `start`, `gone` (worker -> how it ended, for those no
    longer running; `crashed_only`: not those that ended normally) and `close` (every worker ended, `clean`: after they were told to stop)."""

    def __init__(self, grace_s: float):
        self.grace_s, self.ctx, self.procs = grace_s, spawn_context(), {}

    def open(self, specs: list[dict[str, Any]]) -> WorkerChannels:
        self.out = WorkerChannels()   # a pipe per worker: one that dies mid-message blocks no other
        return self.out

    def inbox(self):
        return self.ctx.Queue()

    def start(self, spec: dict[str, Any], inbox) -> None:
        p = self.ctx.Process(target=group_leader_entry,
                             args=(self.grace_s, graph_worker_main, spec, inbox, self.out.open(self.ctx)),
                             name=f"mosaic-graph-worker-{spec['worker']}")
        p.start()
        self.out.started()
        self.procs[spec["worker"]] = p

    def gone(self, crashed_only: bool = False) -> dict[int, str]:
        return {w: f"exited with code {p.exitcode} without reporting" for w, p in self.procs.items()
                if not p.is_alive() and not (crashed_only and p.exitcode == 0)}

    def close(self, clean: bool) -> None:
        end_processes(list(self.procs.values()), self.grace_s if clean else 0.0, self.grace_s)
        self.out.close()


class VllmGraphPool:
    backend = "vllm"

    def __init__(self, vllm: VllmBackend, profiles: ProfileSet | None, placement: dict[int, str],
                 poll_s: float = 0.5):
        # profiles: the graph's agents' (unused: real engines need no cost model)
        self.vllm, self.placement, self.poll_s = vllm, placement, poll_s
        self.natural = not vllm.replay
        if isinstance(vllm.launcher, LocalProcessLauncher):
            self.workers = LocalWorkers(vllm.launcher.grace_s)
        else:
            from mosaic.backends.vllm.ray_graph import RayGraphWorkers
            from mosaic.backends.vllm.ray_launcher import RayLauncher

            if not isinstance(vllm.launcher, RayLauncher):
                raise ConfigError("agent graphs on backend=vllm run on backend.options.launcher=local or ray")
            self.workers = RayGraphWorkers(vllm.launcher)
        self.inbox: dict[int, Any] = {}   # the workers' queues in, made when the run opens them
        self.timers: list = []   # (time, order, fn): at()'s calls due, soonest first (order: the call's)
        self.calls = itertools.count()

    def limits(self) -> dict[str, int]:
        return {m: self.vllm.registry.max_model_len for m in dict.fromkeys(self.placement.values())}

    def submit(self, worker: int, rid: str, prompt_tokens: int, output_tokens: int, key: str | None = None,
               text: str | None = None) -> None:
        if text is not None:
            self.inbox[worker].put({"op": "add", "rid": rid, "prompt": text,
                                    "max_tokens": self.vllm.max_tokens or self.vllm.registry.max_model_len})
            return
        # Requests of one key get the same leading token ids: vLLM's prefix cache finds them.
        self.inbox[worker].put({"op": "add", "rid": rid, "prompt_token_ids": prompt_ids(key or rid, prompt_tokens),
                                "max_tokens": output_tokens})

    def watch(self, worker: int, rid: str, every: int) -> None:
        self.inbox[worker].put({"op": "watch", "rid": rid, "every": every})

    def cancel(self, worker: int, rid: str) -> None:
        self.inbox[worker].put({"op": "cancel", "rid": rid})

    def at(self, t: float, fn: Callable[[float], None]) -> None:
        """fn(now) once the run's clock reaches t (called from the run's loop, between messages)."""
        heapq.heappush(self.timers, (t, next(self.calls), fn))

    def close(self) -> None:
        for q in self.inbox.values():
            q.put({"op": "close"})

    def run(self, on_ready: Callable[[float], None], on_finished: Callable[[float, Finished], None],
            on_progress: Callable[[float, str, int], None],
            on_failed: Callable[[float, int, str], None]) -> tuple[list[SessionRecord], float]:
        """A worker whose engine fails (its exception, or its process gone without a word) is
        reported to `on_failed` with one line; its traceback goes to the log (run.log), its
        session is recorded with that line as its error, and the run goes on with the others."""
        v = self.vllm
        envs = device_env(v.cluster.n, v.device, v.kv_cache_gib, v.cpu_confine)
        t0 = time.time()
        specs: dict[int, dict[str, Any]] = {}
        ready: dict[int, dict[str, Any]] = {}
        failed: set[int] = set()
        served = {w: 0 for w in self.placement}
        sessions: list[SessionRecord] = []
        started = False
        timed_out = False

        def all_loaded(t: float) -> None:
            """on_ready once every engine is loaded or failed."""
            nonlocal started
            if not started and len(failed | set(ready)) == len(specs):
                started = True
                on_ready(t)

        def reported(w: int) -> bool:   # its session is in: done, or failed
            return any(s.worker == w for s in sessions)

        def fail(w: int, why: str) -> None:
            t = time.time() - t0
            failed.add(w)
            r = ready.get(w, {"load_start_s": t, "load_end_s": t})
            sessions.append(SessionRecord(w, 0, self.placement[w], r["load_start_s"], r["load_end_s"],
                                          r["load_end_s"], t, served[w], None, why))
            on_failed(t, w, why)
            all_loaded(t)

        for w, model in sorted(self.placement.items()):
            path, engine_args = v.registry.resolve(model)
            if v.profiles.engine.num_gpu_blocks is not None:
                engine_args = {**engine_args, "num_gpu_blocks_override": v.profiles.engine.num_gpu_blocks}
            specs[w] = {"worker": w, "model": model, "path": path, "engine_args": engine_args, "env": envs[w],
                        "t0": t0, "max_model_len": v.registry.max_model_len}
        try:
            out = self.workers.open(list(specs.values()))
            self.inbox = {w: self.workers.inbox() for w in specs}
            for w, spec in specs.items():
                self.workers.start(spec, self.inbox[w])
            deadline = time.monotonic() + v.timeout_s
            # A worker gone without a word is failed once the queue is empty (what it said before
            # has been read), or, where it crashed, a moment after it was first seen gone while the
            # others kept the queue busy (else its requests would wait for a quiet moment).
            suspects: dict[int, float] = {}
            next_check = time.monotonic() + self.poll_s

            def check(empty: bool) -> None:
                nonlocal next_check
                now = time.monotonic()
                next_check = now + self.poll_s
                for w, why in sorted(self.workers.gone(crashed_only=not empty).items()):
                    if not reported(w) and (empty or now - suspects.setdefault(w, now) >= SETTLE_S):
                        fail(w, f"worker {w} ({self.placement[w]}) {why}")

            while len(sessions) < len(specs):
                if time.monotonic() > deadline:
                    # Each worker still running fails (what it held fails with it, or goes to a
                    # replica that finished): every request gets its row, as the session launcher's.
                    timed_out = True
                    for w in sorted(specs):
                        if not reported(w):
                            fail(w, f"worker {w} ({self.placement[w]}) did not finish within "
                                    f"backend.options.timeout_s={v.timeout_s:g} s")
                    break
                if time.monotonic() >= next_check:
                    check(empty=False)
                    continue
                now = time.time() - t0
                if self.timers and self.timers[0][0] <= now:   # an arrival (online runs) is due
                    heapq.heappop(self.timers)[2](now)
                    continue
                wait = self.poll_s if not self.timers else max(1e-3, min(self.poll_s, self.timers[0][0] - now))
                try:
                    msg = out.get(timeout=wait)
                except queue_mod.Empty:
                    if wait >= self.poll_s:
                        check(empty=True)
                    continue
                w = msg["worker"]
                if w in failed:   # said before it was failed (a crash seen while the queue was busy): settled
                    continue
                if msg.get("fatal"):
                    # One line, the worker's exception; its traceback (another process's) to the log.
                    lines = [ln for ln in msg["fatal"].strip().splitlines() if ln.strip()]
                    log.warning("agent graphs on vLLM: worker %d (%s) failed:\n%s", w, self.placement[w], msg["fatal"],
                                extra=FILE_ONLY)
                    fail(w, f"worker {w} ({self.placement[w]}) failed: {lines[-1].strip() if lines else 'no message'}")
                    continue
                if msg.get("ready"):
                    ready[w] = msg
                    all_loaded(time.time() - t0)
                elif "stream" in msg:
                    on_progress(time.time() - t0, *msg["stream"])
                elif "finished" in msg:
                    f = msg["finished"]
                    if f.get("text") is not None:
                        f = {**f, "answer": extract_answer(f["text"])}
                    served[w] += not f["cancelled"] and not is_prefill(f["rid"])
                    on_finished(time.time() - t0, Finished(**f))
                elif msg.get("done"):
                    s = msg["session"]
                    sessions.append(SessionRecord(w, 0, s["model"], s["load_start_s"], s["load_end_s"],
                                                  s["load_end_s"], s["run_end_s"], s["n_requests"], s["preemptions"]))
        finally:   # also on an error or Ctrl-C: no worker, and so no engine, survives the run
            self.workers.close(len(sessions) == len(specs) and not timed_out)
        return sessions, max((s.run_end_s for s in sessions), default=0.0)
