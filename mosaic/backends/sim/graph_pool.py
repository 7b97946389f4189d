"""Simulated engines for agent graphs (topology=dense|tree): the SimPy engine pool the graph
coordinator (mosaic/graphs/coordinator.py) drives. Every model of the graph stays loaded on its
workers for the whole run, one V1 engine each (mosaic/engine/v1.py, taking requests through an Inbox
between steps, as vLLM's engine core takes them from its input queue). All workers start and load
at once; the coordinator is told when every engine is ready, and each time a request leaves an
engine (finished, or cancelled).
"""
from __future__ import annotations

from typing import Callable

import simpy

from mosaic.core.errors import ConfigError
from mosaic.graphs.trace import Finished, is_prefill
from mosaic.profiles import ProfileSet, load_time_s
from mosaic.trace import SessionRecord
from mosaic.backends.sim.backend import SimBackend
from mosaic.engine import HostLoad, Inbox, Jump, Step, session_engine, usable_kv_tokens


class SimGraphPool:
    backend = "sim"

    def __init__(self, backend: SimBackend, profiles: ProfileSet, placement: dict[int, str]):
        cluster = backend.cluster
        if profiles.engine.scheduling != "v1":
            raise ConfigError("agent graphs run on the V1 engine model (requests join a running engine between "
                              "steps); set engine.scheduling=v1")
        self.profiles, self.placement = profiles, placement
        self.memory = backend.memory
        self.env = simpy.Environment()
        self.host = HostLoad(self.env, cluster, profiles.engine)
        self.inbox = {w: Inbox() for w in placement}
        self.wake: dict[int, simpy.Event | None] = {w: None for w in placement}
        self.stale: dict[int, bool] = {w: False for w in placement}   # watched since the engine last chose
        self.swaps: dict[int, tuple[str, Callable[[float, int], None]]] = {}   # worker -> (next model, when loaded)
        self.closing = False

    def limits(self) -> dict[str, int]:
        out = {}
        for m in dict.fromkeys(self.placement.values()):
            memory = min(self.memory[w] for w, x in self.placement.items() if x == m)
            out[m] = min(self.profiles.engine.max_model_len,
                         usable_kv_tokens(self.profiles.model(m), self.profiles.engine, memory))
            if out[m] < 2:
                raise ConfigError(f"topology: model {m} has no room for a request's KV cache on a {memory} GiB "
                                  "worker; raise cluster.memory_gib or choose a cluster preset with bigger GPUs")
        return out

    def _poke(self, w: int) -> None:
        ev = self.wake[w]
        if ev is not None and not ev.triggered:
            ev.succeed()

    def submit(self, worker: int, rid: str, prompt_tokens: int, output_tokens: int, key: str | None = None) -> None:
        self.inbox[worker].arrivals.append((rid, prompt_tokens, output_tokens, key))
        self._poke(worker)

    def watch(self, worker: int, rid: str, every: int) -> None:
        self.inbox[worker].watch[rid] = [every, every]
        # a jump over decode steps must stop where this request reports: one under way is cut
        # short (poke), one the engine chose before this watch is cut at its first step (stale)
        self.stale[worker] = True
        self._poke(worker)

    def cancel(self, worker: int, rid: str) -> None:
        self.inbox[worker].cancels.add(rid)
        self._poke(worker)

    def room(self, worker: int, prompt_tokens: int) -> bool:
        """Whether the worker's engine would admit a request of this prompt now: nothing waits in
        its queue and its free KV blocks hold the prompt beside those just handed to it (vLLM's
        admission test)."""
        inbox, b = self.inbox[worker], self.profiles.engine.block_size
        if inbox.queued:
            return False
        handed = sum(-(-(a[1] + 1) // b) for a in inbox.arrivals)   # sent since it last yielded
        return -(-(prompt_tokens + 1) // b) + handed <= inbox.free_blocks

    def at(self, t: float, fn: Callable[[float], None]) -> None:
        def timer():
            yield self.env.timeout(max(0.0, t - self.env.now))
            fn(self.env.now)
        self.env.process(timer())

    def swap(self, worker: int, model: str, on_loaded: Callable[[float, int], None]) -> None:
        """End the worker's engine (it holds nothing: the caller drained it), load `model` there,
        then on_loaded(time, worker): from then on the worker serves `model`."""
        self.swaps[worker] = (model, on_loaded)
        self.inbox[worker].closed = True
        self._poke(worker)

    def close(self) -> None:
        self.closing = True
        for w in self.placement:
            self.inbox[w].closed = True
            self._poke(w)

    def _jump(self, w: int, model: str, jump: Jump, inbox: Inbox):
        """Run a jump over decode steps until its end, or until a request arrives for (or leaves)
        this engine: then to the end of the step in progress. Returns the steps run."""
        if inbox.arrivals or inbox.cancels or inbox.closed or self.stale[w]:
            left = float(jump)
        else:
            self.wake[w] = self.env.event()
            left = yield from self.host.elapse(w, model, jump, interrupt=self.wake[w])
            self.wake[w] = None
            if left <= 0:
                return None
        k = jump.steps_by(float(jump) - left)
        rest = jump.cost_of(k) - (float(jump) - left)
        if rest > 0:
            yield from self.host.elapse(w, model, Step(rest, jump.seqs))
        return k

    def run(self, on_ready: Callable[[float], None], on_finished: Callable[[float, Finished], None],
            on_progress: Callable[[float, str, int], None],
            on_failed: Callable[[float, int, str], None] | None = None) -> tuple[list[SessionRecord], float]:
        # A simulated engine does not fail: on_failed is never called.
        env, engine_cfg = self.env, self.profiles.engine
        sessions: list[SessionRecord] = []
        ready = [env.event() for _ in self.placement]

        def engine_proc(w: int, i: int):
            m = self.profiles.model(self.placement[w])
            yield env.timeout(engine_cfg.worker_startup_s)
            self.host.start((w,))   # busy while it loads and steps; idle while it waits for arrivals
            index = 0
            while True:
                inbox = self.inbox[w]
                load_start = env.now
                yield from self.host.load(w, load_time_s(m, engine_cfg, 1))
                yield env.timeout(m.warmup_s)
                load_end = env.now
                if index == 0:
                    ready[i].succeed()
                else:
                    self.swaps.pop(w)[1](env.now, w)
                if self.closing:   # closed while it loaded: the engine starts and ends at once
                    inbox.closed = True
                yield from serve(w, m, inbox, index, load_start, load_end)
                nxt = self.swaps.get(w)
                if nxt is None or self.closing:
                    break
                m, index = self.profiles.model(nxt[0]), index + 1
                self.inbox[w] = Inbox()
            self.host.stop((w,))

        def serve(w: int, m, inbox: Inbox, index: int, load_start: float, load_end: float):
            eng = session_engine(m, engine_cfg, self.memory[w])
            run = eng.run([], lambda: env.now, inbox)
            reply = None
            while True:
                self.stale[w] = False
                try:
                    dur = run.send(reply)
                except StopIteration:
                    break
                reply = None
                # What the last step finished is reported when the engine resumed after it (now):
                # a successor may come to this very engine, so before it waits for arrivals.
                while inbox.progress:
                    on_progress(env.now, *inbox.progress.pop(0))
                while inbox.finished:
                    s = inbox.finished.pop(0)
                    inbox.watch.pop(s.rid, None)
                    on_finished(env.now, Finished(s.rid, s.start, s.first_token,
                                                  s.finish if s.finish is not None else env.now, s.generated,
                                                  s.cancelled, s.cache_hit))
                if dur is None:
                    if inbox.arrivals or inbox.cancels or inbox.closed:
                        continue
                    self.wake[w] = env.event()
                    self.host.idle(w)
                    yield self.wake[w]
                    self.host.resume(w)
                    self.wake[w] = None
                elif isinstance(dur, Jump):
                    reply = yield from self._jump(w, m.name, dur, inbox)
                else:
                    yield from self.host.elapse(w, m.name, dur)
            served = sum(1 for s in eng.result.seqs if not s.cancelled and not is_prefill(s.rid))
            sessions.append(SessionRecord(w, index, m.name, load_start, load_end, load_end, env.now, served,
                                          eng.result.preemptions))

        def driver():
            yield env.all_of(ready)
            on_ready(env.now)

        for i, w in enumerate(sorted(self.placement)):
            env.process(engine_proc(w, i))
        env.process(driver())
        env.run()
        return sessions, max((s.run_end_s for s in sessions), default=0.0)
