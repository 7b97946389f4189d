"""Which workers of each host are serving, and how long a step takes given that (host contention).

A profile's step costs were measured with every worker of the host busy; when fewer are, the
engine's steps take engine.host_contention.step_scale[busy] of that, and a load load_scale[busy] of
the profiled load (mosaic/profiles/engine.py); where the profile measured it by batch, a step's factor
is the one for its running sequences (a V1 engine's steps say how many); an agent graph's engine left
without requests counts as spin_weight of a busy one for the profile's idle_spin_s more (vLLM's
model-runner process spins that long). A worker is busy from the start of a model's load to
the end of its session (in an agent graph's long-lived engine: while it has requests).
Workers w and v share a host when w // workers_per_host == v // workers_per_host. A step (or a jump
over a run of decode steps) is an amount of work at the profiled speed; when a neighbour starts or
stops mid-step, the rest of it proceeds at the new speed. Without a measured contention (GPU
profiles) a step takes its cost and nothing is tracked.
"""
from __future__ import annotations

from collections import Counter
from typing import Generator, Iterable

import simpy

from mosaic.cluster import Cluster
from mosaic.profiles import EngineProfile
from mosaic.engine.v0 import Wait


class HostLoad:
    def __init__(self, env: simpy.Environment, cluster: Cluster, engine: EngineProfile):
        self.env = env
        self.per_host = cluster.workers_per_host
        # Kept with one worker per host too: the profile's costs are for a full host, and a worker
        # alone on its own runs at the one-busy scale.
        self.contention = engine.host_contention
        self.busy: Counter[int] = Counter()   # host -> busy workers (a spinning one counts its share: a float)
        self.changed: dict[int, simpy.Event] = {}
        self.lingering: dict[int, tuple[object, float]] = {}   # worker -> (token, share) while it spins

    def _host(self, worker: int) -> int:
        return worker // self.per_host

    def _change(self, workers: Iterable[int], delta: float) -> None:
        for h in {self._host(w) for w in workers}:
            self.busy[h] += sum(delta for w in workers if self._host(w) == h)
            ev = self.changed.pop(h, None)
            if ev is not None:
                ev.succeed()

    def start(self, workers: Iterable[int]) -> None:
        self._change(list(workers), +1)

    def stop(self, workers: Iterable[int]) -> None:
        self._change(list(workers), -1)

    def idle(self, worker: int) -> None:
        """`worker`'s engine has run out of requests but stays loaded: for the profile's idle_spin_s
        it counts as spin_weight of a busy worker (its spinning model-runner process), then as idle,
        unless it gets work first (resume)."""
        spin = self.contention.idle_spin_s if self.contention is not None else 0.0
        if spin <= 0:
            self.stop((worker,))
            return
        weight = self.contention.spin_weight
        self._change((worker,), weight - 1)
        token = self.lingering[worker] = (object(), weight)

        def later():
            yield self.env.timeout(spin)
            if self.lingering.get(worker) is token:
                del self.lingering[worker]
                self._change((worker,), -weight)

        self.env.process(later())

    def resume(self, worker: int) -> None:
        """`worker`'s idle engine got work: busy again (from its share, if it was spinning)."""
        token = self.lingering.pop(worker, None)
        self._change((worker,), 1 - token[1] if token is not None else 1)

    def scale(self, worker: int, model: str | None = None, seqs: int | None = None) -> float:
        """The step-time factor for `worker` serving `model` now (it counts itself among the busy),
        for a step of `seqs` running sequences (None: not known)."""
        if self.contention is None:
            return 1.0
        return self.contention.scale(max(1, self.busy[self._host(worker)]), model, seqs)

    def elapse(self, worker: int, model: str, duration: float, interrupt: simpy.Event | None = None) -> Generator:
        """Advance `worker`'s clock through one yield of its engine: a Wait as is; a step's cost at
        the speed its host's load gives, re-timed whenever that load changes. With `interrupt`, it
        stops when that event fires first; returns the work (seconds at the profiled speed) left."""
        if self.contention is None or isinstance(duration, Wait):
            if interrupt is None:
                yield self.env.timeout(duration)
                return 0.0
            start = self.env.now
            done = self.env.timeout(duration)
            fired = yield done | interrupt
            return 0.0 if done in fired else max(0.0, float(duration) - (self.env.now - start))
        seqs = getattr(duration, "seqs", None)
        return (yield from self._timed(worker, float(duration), lambda: self.scale(worker, model, seqs), interrupt))

    def load(self, worker: int, duration: float) -> Generator:
        """Advance `worker`'s clock through a model load (the worker counts as busy meanwhile)."""
        if self.contention is None or not self.contention.load_scale:
            yield self.env.timeout(duration)
            return
        yield from self._timed(worker, float(duration),
                               lambda: self.contention.load(max(1, self.busy[self._host(worker)])))

    def _timed(self, worker: int, work: float, scale, interrupt: simpy.Event | None = None) -> Generator:
        while work > 1e-12:
            s = scale()
            h = self._host(worker)
            changed = self.changed.get(h)
            if changed is None:
                changed = self.changed[h] = self.env.event()
            start = self.env.now
            done = self.env.timeout(work * s)
            fired = yield (done | changed) if interrupt is None else (done | changed | interrupt)
            if done in fired:
                return 0.0
            work -= (self.env.now - start) / s
            if interrupt is not None and interrupt in fired:
                return max(0.0, work)
        return 0.0
