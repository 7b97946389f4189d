"""pull: late binding, work taken over from replicas not started yet, replicas added mid-run.

Each replica of the plan starts with the requests the plan gave it as its own queue; nothing is
bound until the replica's engine has room for it (a free sequence slot and KV for the prompt, as
vLLM's waiting queue admits). A replica whose own queue is empty takes, one at a time, a queued
request of a replica of its model that has not started yet (its worker is still busy with earlier
sessions): the one whose worker reaches it last, as long as the taker is predicted to be through
everything it holds, and that request, before then. So a plan that goes as predicted runs as under
static, and a replica left waiting behind a session that runs long loses work to one that is free.

A planned session with nothing left to do when its worker reaches it is skipped (no load). A
worker done with its plan loads a model with work queued on a replica not started yet
(`add_replicas`): the one whose wait is longest, if that wait outlasts two loads of the model (one
to bring it up, one's worth of work to take) and its queue outlasts one load; on a worker the
model fits (memory) and without loading more than K models there.

Predictions: a session's time is the planner's own session estimate for its request count
(StageInputs.session_s, from the engine model); a replica running since `start` with n requests
bound or queued has f(n) - (now - start) left, a replica not started f(n) and its load.
"""
from __future__ import annotations

from collections import Counter, deque
from typing import Callable

from mosaic.config.schema import RuntimeConfig
from mosaic.plan import Plan
from mosaic.runtime import RUNTIMES
from mosaic.runtime.base import Replica, Runtime, StageInputs


@RUNTIMES.register("pull")
class Pull(Runtime):
    name = "pull"
    late_binding = True

    def __init__(self, plan: Plan, inputs: StageInputs, cfg: RuntimeConfig | None = None):
        super().__init__(plan, inputs, cfg)
        self.longest_first = self.cfg.order == "longest_first" or (self.cfg.order == "auto" and bool(inputs.predicted))
        self.home: dict[str, Replica] = {}            # request -> the replica the plan gave it
        self.on_worker: dict[int, list[Replica]] = {}  # worker -> its replicas, in the order it runs them
        for reps in self.replicas.values():
            for r in reps:
                self.on_worker.setdefault(r.worker, []).append(r)
        for wp in plan.workers:
            for slot, s in enumerate(wp.sessions):
                if not s.workers or s.workers[0] == wp.worker:
                    for rid in s.request_ids:
                        self.home[rid] = Replica(wp.worker, slot, s.model)
        for reps in self.on_worker.values():
            reps.sort(key=lambda r: r.slot)
        self.queues: dict[Replica, deque[str]] = {}
        self.holding: Counter[Replica] = Counter()   # requests bound to a replica, finished or not
        self.start: dict[Replica, float] = {}        # replicas started, and when
        self.done: set[Replica] = set()              # replicas ended or skipped
        self._f: dict[tuple[str, int], float] = {}

    # -------- predictions
    def _session(self, model: str, n: int) -> float:
        """Predicted seconds of a session of `model` over n requests."""
        if n <= 0:
            return 0.0
        key = (model, n)
        if key not in self._f:
            f = self.inputs.session_s.get(model)
            self._f[key] = f(n) if f is not None else n * self.inputs.request_s.get(model, 1.0)
        return self._f[key]

    def _left(self, r: Replica, t: float, extra: int = 0) -> float:
        """Predicted seconds before replica r is through what it holds and queues (+ extra)."""
        n = self.holding[r] + len(self.queues.get(r, ())) + extra
        if r in self.start:
            return max(0.0, self._session(r.model, n) - (t - self.start[r]))
        return self.inputs.load_s.get(r.model, 0.0) + self._session(r.model, n)

    def _delay(self, victim: Replica, t: float) -> float:
        """Predicted seconds until a replica not started yet starts: its worker's replicas before it."""
        return sum(self._left(r, t) for r in self.on_worker.get(victim.worker, ())
                   if r.slot < victim.slot and r not in self.done)

    # -------- events and decisions
    def released(self, rids, t: float) -> None:
        fresh: dict[Replica, list[str]] = {}
        for rid in rids:
            home = self.home.get(rid)
            if home is None:
                raise RuntimeError(f"runtime 'pull': request {rid} is in no session of the plan")
            fresh.setdefault(home, []).append(rid)
        for rep, ids in fresh.items():
            q = self.queues.setdefault(rep, deque())
            q.extend(ids)
            if self.longest_first:   # stable: equal predictions keep the plan's order
                self.queues[rep] = deque(sorted(q, key=lambda i: -self.inputs.predicted.get(i, 0.0)))

    def should_start(self, replica: Replica, t: float) -> bool:
        go = bool(self.queues.get(replica)) or self._worth(replica.model, replica.worker, t) > 0
        if go:
            self.start[replica] = t
        else:
            self.done.add(replica)
        return go

    def take(self, replica: Replica, fits: Callable[[int], bool], t: float) -> str | None:
        q = self.queues.get(replica)
        if q:
            if not fits(self.inputs.requests[q[0]].prompt_tokens):
                return None
            return self._bound(q.popleft(), replica, t)
        # only from a replica not started yet: what this one is predicted to be through before that
        # replica's worker gets to it (a running one's queue is its own: moving work between
        # running replicas on predictions lost more than it won on the benchmark, docs/runtime.md)
        waiting = [r for r in self.replicas.get(replica.model, ())
                   if r.worker != replica.worker and r not in self.start and r not in self.done and self.queues.get(r)]
        if not waiting:
            return None
        delays = {r: self._delay(r, t) for r in waiting}
        victim = max(waiting, key=lambda r: (delays[r], -r.worker, -r.slot))
        if self._left(replica, t, extra=1) >= delays[victim]:
            return None
        vq = self.queues[victim]
        if not fits(self.inputs.requests[vq[-1]].prompt_tokens):
            return None
        return self._bound(vq.pop(), replica, t)

    def _bound(self, rid: str, replica: Replica, t: float) -> str:
        self.holding[replica] += 1
        self._bind(rid, replica, t)
        return rid

    def ended(self, replica: Replica, t: float) -> None:
        self.done.add(replica)

    def _worth(self, model: str, worker: int, t: float) -> float:
        """How long the longest-waiting replica of `model` not started yet (on another worker) still
        waits, where that outlasts two loads and its queue one; else 0."""
        load = self.inputs.load_s.get(model, 0.0)
        waiting = [r for r in self.replicas.get(model, ()) if r.worker != worker and r not in self.start
                   and r not in self.done and self.queues.get(r)
                   and self._session(model, len(self.queues[r])) > load]
        most = max((self._delay(r, t) for r in waiting), default=0.0)
        return most if most > 2 * load else 0.0

    def add_replica(self, worker: int, models: set[str], t: float) -> Replica | None:
        if not self.cfg.add_replicas:
            return None
        best, best_wait = None, 0.0
        for model in self.replicas:
            if worker not in self.inputs.fits.get(model, ()) or not self.k_allows(models, model):
                continue
            wait = self._worth(model, worker, t)
            if wait > best_wait:
                best, best_wait = model, wait
        if best is None:
            return None
        replica = self.new_replica(worker, best)
        self.replicas[best].append(replica)
        self.on_worker.setdefault(worker, []).append(replica)
        self.start[replica] = t
        return replica
