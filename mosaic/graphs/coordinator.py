"""Runs every query's agent graph on a pool of engines, whichever backend holds them.

The pool (mosaic/backends/sim/graph_pool.py: simulated engines; mosaic/backends/vllm/graph_pool.py: real ones) owns the
engines and the clock: it loads one engine per worker, takes requests (`submit`, `cancel`) while
its engines run, and calls back when every engine is ready and when a request leaves an engine
(finished or cancelled). The coordinator owns the graphs: once the engines are ready it starts
`concurrency` queries (the next one as soon as one finishes); a request is released when its
precursors are all done or cancelled, to the replica of its model with the fewest requests in
flight (ties: the lower worker id), its prompt the question plus the outputs it reads, its
outcome from `outcome` (the answer model; a real engine in natural mode answers for itself); when
an agent finishes, `exits` may cancel the rest of its cluster (and the precursors only those read).
A query ends with its aggregator. Every agent request ends served, cancelled or failed, none lost.

Online (`arrivals`, seconds per query): each query starts at its arrival instead (from when the
engines are ready, or, `cold`, from the workers' start: a query that arrives while they load waits
for them), however many are in flight; `max_in_system` rejects a query that arrives while that many
are unfinished (its requests recorded as cancelled by "admission"). `router` binds a released
request to a replica: least_outstanding (fewest in flight, the offline rule), p2c (the fewer of two
drawn at random, seeded), round_robin (a fixed rotation, blind to load) or pull (the model's
requests wait in its queue; a replica with fewer than `slots` in flight whose engine would admit
the request now, where the pool can tell (`room`: the simulated engine's free KV), takes the next). The MoA
pipeline online gives each query its own graph (`shape_of`: its routed experts, then the
aggregator) and a `gate` that may answer a query from its experts without the aggregator.

An engine that fails (the pool's `on_failed`, with why) takes no more requests: what it held goes
to another replica of its model (released again there), or, with none left, fails, and so does every
later request of that model. A failed request is read by nobody, as a cancelled one; a query
whose aggregator failed ends without an answer. The run goes on with the engines left.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from mosaic.graphs.outcomes import AgentOutcome
from mosaic.graphs.shape import ROOT, AgentSpec
from mosaic.graphs.trace import (CANCELLED, FAILED, PREFILL_MARK, SERVED, AgentRecord, Finished, GraphTrace, busy_stats,
                                 QueryRecord, is_prefill)
from mosaic.trace import SessionRecord, WorkerStats
from mosaic.workload.prompts import AGGREGATOR_TEMPLATE_TOKENS as TEMPLATE_TOKENS
from mosaic.workload.prompts import aggregator_prompt, expert_prompt
from mosaic.workload.types import Query

_EXIT_STREAM = 0xE817   # the early-exit draws' generator, apart from the answer model's

# outcome(query, agent, agent index, outcomes read, output room) -> the agent's outcome
OutcomeFn = Callable[[Query, AgentSpec, int, list[AgentOutcome], int], AgentOutcome]
# exits(outcomes of a cluster's finished agents, the cluster's generator) -> cancel the rest?
ExitFn = Callable[[list[AgentOutcome], np.random.Generator], bool]
# gate(query, its served precursors' outcomes) before its aggregator is released -> the query's
# answer without the aggregator (the aggregator skipped), or None to run it.
GateFn = Callable[[Query, list[AgentOutcome]], "tuple[str | None] | None"]

ROUTERS = ("least_outstanding", "p2c", "round_robin", "pull")
_P2C_STREAM = 0x92C
ADMISSION = "admission"   # cancelled_by of a rejected query's requests
SKIPPED = "aggregation"   # cancelled_by of an aggregator the gate skipped


@dataclass(frozen=True)
class Replan:
    """Moving replicas while an online run goes. Per model: its mean output (`out_tokens`), how
    many requests its engine holds at once (`concurrency`: slots, or what its KV holds of mean
    requests), its decode step's time at a batch of b (`step_s`), its load time. A model's backlog
    of n requests on r replicas drains in about out_tokens * step_s(b) * max(1, n / (r *
    concurrency)), b = min(concurrency, n / r): its requests decode side by side, slower as the
    batch grows, in rounds once they outnumber what the engines hold. A replica moves from the
    model that would drain soonest without it to the one that drains last, once that is more than
    `ratio` times longer and longer than its load."""
    ratio: float
    out_tokens: dict[str, float]
    concurrency: dict[str, float]
    step_s: dict[str, Callable[[float], float]]
    load_s: dict[str, float]

    def drain_s(self, model: str, outstanding: int, replicas: int) -> float:
        if replicas <= 0:
            return float("inf")
        per = outstanding / replicas
        b = min(self.concurrency[model], max(1.0, per))
        return self.out_tokens[model] * self.step_s[model](b) * max(1.0, per / self.concurrency[model])


@dataclass(frozen=True)
class Move:
    """A replica moved mid-run: `worker` stopped taking `source`'s requests at `drain_s`, was empty
    and started loading `target` at `load_s`, and served it from `ready_s`."""
    worker: int
    source: str
    target: str
    drain_s: float
    load_s: float
    ready_s: float


class EnginePool(Protocol):
    backend: str

    def limits(self) -> dict[str, int]:
        """Per model: the tokens one request may hold (context window, KV cache)."""

    def submit(self, worker: int, rid: str, prompt_tokens: int, output_tokens: int, key: str | None = None,
               text: str | None = None) -> None:
        """Hand a request to a worker's engine. Requests of one `key` have prompts that share
        their leading tokens (the engine's prefix cache may hold them). With `text` (a natural
        pool) the prompt is that text and the engine stops when the model does."""

    def watch(self, worker: int, rid: str, every: int) -> None:
        """Report the request's progress each time it has generated `every` more tokens."""

    def cancel(self, worker: int, rid: str) -> None: ...

    def close(self) -> None:
        """No more requests: each engine stops once it is idle."""

    def at(self, t: float, fn: Callable[[float], None]) -> None:
        """Call fn(now) at time t (seconds from the start of the run; now if t has passed)."""

    def run(self, on_ready: Callable[[float], None], on_finished: Callable[[float, Finished], None],
            on_progress: Callable[[float, str, int], None],
            on_failed: Callable[[float, int, str], None]) -> tuple[list[SessionRecord], float]:
        """Load the engines and serve until closed; returns one session per worker and the end time.
        A worker whose engine fails is reported once (`on_failed(time, worker, why)`), before
        `on_ready` if it failed loading (on_ready comes when every other engine is loaded); what it
        held is not reported again."""


class _Node:
    __slots__ = ("spec", "index", "rid", "query", "state", "worker", "release", "prompt", "outcome", "by", "succ",
                 "early", "streaming", "text", "error")

    def __init__(self, spec: AgentSpec, index: int, query: Query):
        self.spec, self.index, self.query = spec, index, query
        self.rid = f"{query.id}/{spec.name}"
        self.state = "pending"          # pending -> released -> served | cancelled
        self.worker: int | None = None
        self.release: float | None = None
        self.prompt: int | None = None
        self.outcome: AgentOutcome | None = None
        self.by = ""
        self.succ: list[_Node] = []
        self.early = 0                  # overlap: prefill-only requests sent ahead of it (0: none yet)
        self.streaming: _Node | None = None   # overlap: the precursor whose stream it prefills
        self.text: str | None = None          # natural generation: what it wrote
        self.error: str | None = None         # failed: why


class GraphCoordinator:
    def __init__(self, queries: tuple[Query, ...], shape: tuple[AgentSpec, ...], placement: dict[int, str],
                 outcome: OutcomeFn, exits: ExitFn, exit_rule: str, concurrency: int, seed: int,
                 overlap: str = "none", overlap_chunk: int = 64, *, arrivals=None, engines: str = "warm",
                 max_in_system: int | None = None, router: str = "least_outstanding", slots: int | None = None,
                 shape_of: Callable[[Query], tuple[AgentSpec, ...]] | None = None, gate: GateFn | None = None,
                 replan: "Replan | None" = None, root_prompt_cap: int | None = None):
        if router not in ROUTERS:
            raise ValueError(f"router {router!r} is not one of {ROUTERS}")
        if router == "pull" and not slots:
            raise ValueError("router pull needs the engines' slots (max_num_seqs)")
        self.queries, self.shape, self.placement = queries, shape, dict(placement)
        self.shape_of = shape_of or (lambda q: shape)
        self.gate = gate
        self.arrivals = None if arrivals is None else [float(a) for a in arrivals]
        if self.arrivals is not None and len(self.arrivals) != len(queries):
            raise ValueError(f"{len(self.arrivals)} arrival times for {len(queries)} queries")
        self.engines, self.max_in_system = engines, max_in_system
        self.router, self.slots = router, slots
        self.rng = np.random.default_rng([seed, _P2C_STREAM])
        self.turn: dict[str, int] = defaultdict(int)          # round_robin: the model's next replica
        self.waiting: dict[str, list[_Node]] = defaultdict(list)   # pull: released, not yet bound
        self.answers: dict[str, str | None] = {}   # a query the gate answered without its aggregator
        self.replan = replan
        # The MoA pipeline's aggregator prompt is cut to half the context (engine.aggregator_cap),
        # leaving the other half for its answer, as the offline pipeline cuts it.
        self.root_prompt_cap = root_prompt_cap
        self.draining: tuple[int, str, float] | None = None   # (worker, model it goes to, since)
        self.calm_until = 0.0
        self.moves: list[Move] = []
        self.loading_since: float | None = None   # when the worker being moved began loading its new model
        self.outcome, self.exits, self.exit_rule = outcome, exits, exit_rule
        self.concurrency, self.seed = concurrency, seed
        self.overlap, self.overlap_chunk = overlap, overlap_chunk
        self.prefills = 0
        self.replicas: dict[str, list[int]] = defaultdict(list)
        for w, m in sorted(placement.items()):
            self.replicas[m].append(w)
        self.inflight = {w: 0 for w in placement}
        self.dead: dict[int, str] = {}   # worker -> why its engine failed
        self.order = {q.id: i for i, q in enumerate(queries)}
        self.records: dict[str, AgentRecord] = {}
        self.query_records: list[QueryRecord] = []
        self.nodes: dict[str, _Node] = {}
        self.graphs: dict[str, dict[str, _Node]] = {}
        self.started: dict[str, float] = {}
        self.exit_rng: dict[tuple[str, str], np.random.Generator] = {}
        self.todo = list(queries)
        self.starts, self.starting = 0, False   # queries to start, and whether _start_query is starting them
        self.truncated = 0
        self.capped = 0
        self.ready_s = 0.0
        self.now = 0.0

    # ------------------------------------------------------------------ driving a pool

    def run(self, pool: EnginePool, progress=None) -> GraphTrace:
        self.pool, self.limit, self.progress = pool, pool.limits(), progress
        # A natural pool's engines answer for themselves: an agent's outcome is what it wrote
        # (its answer and confidence from its text and logprobs), known when it finishes.
        self.natural = bool(getattr(pool, "natural", False))
        sessions, end = pool.run(self._ready, self._finished, self._progress, self._failed_worker)
        expected = sum(len(self.shape_of(q)) for q in self.queries)
        if len(self.records) != expected or len(self.query_records) != len(self.queries):
            raise RuntimeError(f"agent graphs on {pool.backend}: {expected - len(self.records)} requests and "
                               f"{len(self.queries) - len(self.query_records)} queries unaccounted for")
        position = {q.id: {a.name: i for i, a in enumerate(self.shape_of(q))} for q in self.queries}
        reqs = tuple(sorted(self.records.values(), key=lambda r: (self.order[r.query_id], position[r.query_id][r.agent])))
        qs = tuple(sorted(self.query_records, key=lambda r: self.order[r.query_id]))
        sess = tuple(sorted(sessions, key=lambda s: s.worker))
        stats: tuple[WorkerStats, ...] = busy_stats(sess, reqs, sorted(self.placement), end)
        return GraphTrace(pool.backend, end, self.ready_s, reqs, qs, sess, stats, self.truncated, self.prefills,
                          None if self.natural else self.capped, tuple(self.moves))

    def _ready(self, t: float) -> None:
        self.now = self.ready_s = t
        if not self.queries:
            self.pool.close()
        if self.arrivals is not None:
            self.base = t if self.engines == "warm" else 0.0
            self.next_arrival = 0
            self._arrive(t)
            return
        for _ in range(min(self.concurrency, len(self.queries))):
            self._start_query()

    def _arrive(self, t: float) -> None:
        """Start every query whose arrival has come, then wait for the next one."""
        self.now = t
        while self.next_arrival < len(self.queries) and self.base + self.arrivals[self.next_arrival] <= t + 1e-12:
            i = self.next_arrival
            self.next_arrival += 1
            q = self.queries[i]
            arrived = self.base + self.arrivals[i]
            if self.max_in_system is not None and len(self.graphs) >= self.max_in_system:
                self._reject(q, arrived)
            else:
                self._start_one(q, arrived)
        if self.next_arrival < len(self.queries):
            self.pool.at(self.base + self.arrivals[self.next_arrival], self._arrive)

    def _reject(self, q: Query, arrived: float) -> None:
        """Admission refused: every request of the query recorded as cancelled, none sent."""
        for i, a in enumerate(self.shape_of(q)):
            n = _Node(a, i, q)
            n.state, n.by = CANCELLED, ADMISSION
            self._record(n, None)
        self.query_records.append(QueryRecord(q.id, arrived, arrived, 0.0, None, q.gold, False, 0,
                                              len(self.shape_of(q)), 0, True))
        if self.progress is not None:
            self.progress.update(1)
        if len(self.query_records) == len(self.queries):
            self.pool.close()

    def _finished(self, t: float, f: Finished) -> None:
        self.now = t
        if is_prefill(f.rid):   # a prefill-only request (overlap): its work is the cache it left
            return
        n = self.nodes[f.rid]
        if n.rid in self.records or n.state == FAILED:
            return   # already settled (its engine failed meanwhile): once counts
        self.inflight[n.worker] -= 1
        self._pull(n.worker)
        self._drained(n.worker)
        if f.cancelled or n.state == CANCELLED:   # aborted, or finished in the step its cancel came in
            n.state = CANCELLED
            self._record(n, f)
            return
        n.state = SERVED
        if self.natural:
            n.outcome = AgentOutcome(f.output_tokens, f.answer, f.confidence or 0.0, f.answer == n.query.gold)
            n.text, n.prompt = f.text or "", f.prompt_tokens
        self._record(n, f)
        if n.spec.name == ROOT:
            self._done_query(n.query)
            return
        graph = self.graphs[n.query.id]
        cl = n.spec.cluster
        siblings = [s for s in graph.values() if s.spec.cluster == cl]
        key = (n.query.id, cl)
        if key not in self.exit_rng:
            self.exit_rng[key] = np.random.default_rng([self.seed, _EXIT_STREAM, self.order[n.query.id], n.spec.layer,
                                                        int(cl.rsplit("c", 1)[1])])
        outs = [s.outcome for s in siblings if s.state == SERVED]
        exited = any(s.state in ("pending", "released") for s in siblings) and self.exits(outs, self.exit_rng[key])
        if exited:
            for s in siblings:
                self._cancel(s, self.exit_rule)
        # A successor may now have every precursor done or cancelled: only n's can, unless the
        # cluster was just cancelled (checking every sibling on every finish is quadratic in the
        # cluster: a 2048-agent layer took minutes).
        for s in siblings if exited else (n,):
            self._check_releases(s)
        for s in n.succ:
            if s.state == "pending":
                self._prefill_ahead(s)

    # ------------------------------------------------------------------ graph state

    def _start_query(self) -> None:
        """Start the next query. A query can end while it starts (every engine it needs failed),
        starting the next: that start is queued and run by the loop here, not nested in it (a
        nested start per query overflowed the stack at ~100 queries)."""
        self.starts += 1
        if self.starting:
            return
        self.starting = True
        try:
            while self.starts:
                self.starts -= 1
                if self.todo and self.arrivals is None:
                    self._start_one(self.todo.pop(0), self.now)
        finally:
            self.starting = False

    def _start_one(self, q: Query, arrived: float) -> None:
        graph = {a.name: _Node(a, i, q) for i, a in enumerate(self.shape_of(q))}
        for n in graph.values():
            for r in n.spec.reads:
                graph[r].succ.append(n)
            self.nodes[n.rid] = n
        self.graphs[q.id] = graph
        self.started[q.id] = arrived
        for n in graph.values():
            if not n.spec.reads:
                self._release(n)

    def _release(self, n: _Node) -> None:
        q, graph, m = n.query, self.graphs[n.query.id], n.spec.model
        inputs = [graph[r] for r in n.spec.reads if graph[r].state == SERVED]
        prompt = q.prompt_tokens + (TEMPLATE_TOKENS + sum(i.outcome.output_tokens for i in inputs)
                                    if n.spec.reads else 0)
        cap = self.limit[m] - 1
        if n.spec.name == ROOT and self.root_prompt_cap is not None:
            cap = min(cap, self.root_prompt_cap)
        if prompt > cap:   # the tail of what it reads is cut to fit, counted
            prompt = cap
            self.truncated += 1
        n.prompt = prompt
        n.release = self.now
        if self.gate is not None and n.spec.name == ROOT:
            answer = self.gate(q, [i.outcome for i in inputs])
            if answer is not None:   # answered by its experts: the aggregator is not sent
                n.state, n.by = CANCELLED, SKIPPED
                self.answers[q.id] = answer[0]
                self._record(n, None)
                self._done_query(q)
                return
        if not self.replicas[m]:
            self._fail(n)
            return
        if not self.natural:
            n.outcome = self.outcome(q, n.spec, n.index, [i.outcome for i in inputs], self.limit[m] - prompt)
            self.capped += n.outcome.capped
        self._route(n)
        for s in n.succ:
            if s.state == "pending":
                self._prefill_ahead(s)

    def _route(self, n: _Node) -> None:
        """Bind released node n to a replica of its model by the router (a node whose successor's
        prefill already went to a worker, overlap, stays there), or, pull, queue it."""
        m = n.spec.model
        if n.early:
            self._submit(n, n.worker)
            return
        live = self.replicas[m]
        if self.router == "least_outstanding":
            w = self._least_busy(m)
        elif self.router == "round_robin":
            w = live[self.turn[m] % len(live)]
            self.turn[m] += 1
        elif self.router == "p2c":
            pair = live if len(live) <= 2 else [live[i] for i in self.rng.choice(len(live), 2, replace=False)]
            w = min(pair, key=lambda x: (self.inflight[x], x))
        else:
            room = [x for x in live if self._has_room(x, n.prompt)]
            if not room:
                n.state, n.worker = "released", None
                self.waiting[m].append(n)
                return
            w = min(room, key=lambda x: (self.inflight[x], x))
        self._submit(n, w)
        self._maybe_move()

    # ------------------------------------------------------------------ moving replicas (online)

    def _outstanding(self, m: str) -> int:
        return sum(self.inflight[w] for w in self.replicas[m]) + len(self.waiting[m])

    def _maybe_move(self) -> None:
        rp = self.replan
        if rp is None or self.draining is not None or self.now < self.calm_until:
            return
        models = [m for m in self.replicas if self.replicas[m]]
        if len(models) < 2:
            return
        out = {m: self._outstanding(m) for m in models}
        drain = {m: rp.drain_s(m, out[m], len(self.replicas[m])) for m in models}
        target = max(models, key=lambda m: (drain[m], m))
        donors = [m for m in models if m != target and len(self.replicas[m]) >= 2]
        if not donors:
            return
        after = {m: rp.drain_s(m, out[m], len(self.replicas[m]) - 1) for m in donors}
        source = min(donors, key=lambda m: (after[m], m))
        if drain[target] <= rp.ratio * after[source] or drain[target] <= rp.load_s[target]:
            return
        w = min(self.replicas[source], key=lambda x: (self.inflight[x], -x))
        self.replicas[source].remove(w)   # takes nothing more; moves once what it holds is done
        self.draining = (w, target, self.now)
        self._drained(w)

    def _drained(self, w: int) -> None:
        """The worker being moved holds nothing any more: its engine goes, the new model loads."""
        if (self.draining is None or self.draining[0] != w or self.inflight[w] > 0 or w in self.dead
                or self.loading_since is not None):
            return
        self.loading_since = self.now
        self.pool.swap(w, self.draining[1], self._moved)

    def _moved(self, t: float, w: int) -> None:
        self.now = t
        _, target, since = self.draining
        self.moves.append(Move(w, self.placement[w], target, since, self.loading_since, t))
        self.draining, self.loading_since = None, None
        self.placement[w] = target
        self.replicas[target] = sorted([*self.replicas[target], w])
        self.calm_until = t + self.replan.load_s[target]   # hysteresis: no move right after one
        self._pull(w)

    def _has_room(self, w: int, prompt: int) -> bool:
        """pull: a free slot of the engine's max_num_seqs, and, where the pool can tell (a simulated
        engine's KV cache), a place in its batch now; an empty engine always has room (a prompt
        larger than its free KV must wait somewhere: there, not in the queue forever)."""
        if self.inflight[w] == 0:
            return True
        if self.inflight[w] >= self.slots:
            return False
        room = getattr(self.pool, "room", None)
        return room is None or room(w, prompt)

    def _pull(self, w: int) -> None:
        """pull: worker w may have room again; it takes its model's oldest waiting requests while
        it has room for them."""
        if self.router != "pull" or w in self.dead or w not in self.replicas[self.placement[w]]:
            return
        queue = self.waiting[self.placement[w]]
        while queue and self._has_room(w, queue[0].prompt):
            n = queue.pop(0)
            if n.state == "released" and n.worker is None:
                self._submit(n, w)

    def _least_busy(self, model: str) -> int:
        """The live replica of `model` with the fewest requests in flight (ties: the lower id)."""
        return min(self.replicas[model], key=lambda w: (self.inflight[w], w))

    def _submit(self, n: _Node, w: int) -> None:
        """Hand released node n to worker w's engine (again, after an engine failed)."""
        n.state, n.worker = "released", w
        self.inflight[w] += 1
        if self.natural:
            q, graph = n.query, self.graphs[n.query.id]
            inputs = [graph[r] for r in n.spec.reads if graph[r].state == SERVED]
            text = (aggregator_prompt(q.text, [(i.spec.model, i.text) for i in inputs]) if n.spec.reads
                    else expert_prompt(q.text or "(question text not available)"))
            self.pool.submit(w, n.rid, n.prompt, 0, None, text)
        else:
            self.pool.submit(w, n.rid, n.prompt, n.outcome.output_tokens, n.rid if n.early else None)

    # ------------------------------------------------------------------ prefill overlap

    def _prefill_ahead(self, s: _Node) -> None:
        """Overlap: prefill what successor `s`'s prompt will start with, on the worker it will run
        on, through prefix-cache kin requests (one output token each, key s.rid): its prefix once
        its precursors start, then the outputs finished so far; with one precursor left running,
        its stream is followed (_progress)."""
        graph = self.graphs.get(s.query.id)
        if self.overlap == "none" or not self.replicas[s.spec.model] or graph is None:
            return
        reads = [graph[r] for r in s.spec.reads]
        if not s.early:
            if any(p.state == "pending" for p in reads):
                return   # prefilled once all its precursors are running
            s.worker = self._least_busy(s.spec.model)
        done = sum(p.outcome.output_tokens for p in reads if p.state == SERVED)
        self._prefill(s, done)
        running = [p for p in reads if p.state == "released"]
        if len(running) == 1 and s.streaming is not running[0]:
            s.streaming = running[0]
            self.pool.watch(running[0].worker, running[0].rid, self.overlap_chunk)

    def _prefill(self, s: _Node, tokens: int) -> None:
        prompt = min(s.query.prompt_tokens + TEMPLATE_TOKENS + tokens, self.limit[s.spec.model] - 1)
        s.early += 1
        self.prefills += 1
        self.pool.submit(s.worker, f"{s.rid}{PREFILL_MARK}{s.early}", prompt, 1, s.rid)

    def _progress(self, t: float, rid: str, generated: int) -> None:
        self.now = t
        p = self.nodes.get(rid)
        if p is None or p.state != "released":
            return
        graph = self.graphs[p.query.id]
        for s in p.succ:
            if s.state == "pending" and s.streaming is p:
                done = sum(graph[r].outcome.output_tokens for r in s.spec.reads if graph[r].state == SERVED)
                self._prefill(s, done + generated)

    def _cancel(self, n: _Node, rule: str) -> None:
        if n.state in (SERVED, CANCELLED, FAILED):
            return
        was_released = n.state == "released"
        n.state, n.by = CANCELLED, rule
        if was_released and n.worker is None:   # pull: still in its model's queue, never sent
            self.waiting[n.spec.model].remove(n)
            self._record(n, None)
        elif was_released:
            self.pool.cancel(n.worker, n.rid)   # recorded when the engine lets it go
        else:
            self._record(n, None)
        graph = self.graphs[n.query.id]
        for r in n.spec.reads:   # a precursor no live successor reads is cancelled with it
            p = graph[r]
            if p.state in ("pending", "released") and all(s.state == CANCELLED for s in p.succ):
                self._cancel(p, rule)

    def _check_releases(self, n: _Node) -> None:
        graph = self.graphs.get(n.query.id)
        if graph is None:   # the query has ended meanwhile (its aggregator failed at release)
            return
        for s in n.succ:
            if s.state == "pending" and all(graph[r].state in (SERVED, CANCELLED, FAILED) for r in s.spec.reads):
                self._release(s)

    # ------------------------------------------------------------------ failed engines

    def _failed_worker(self, t: float, w: int, why: str) -> None:
        if w in self.dead:
            return
        self.now = t
        self.dead[w] = why
        if self.draining is not None and self.draining[0] == w:
            self.draining, self.loading_since = None, None
        m = self.placement[w]
        self.replicas[m] = [x for x in self.replicas[m] if x != w]
        # A cancel it had not yet answered: the request is let go now.
        for n in self.nodes.values():
            if n.worker == w and n.state == CANCELLED and n.rid not in self.records:
                self.inflight[w] -= 1
                self._record(n, None)
        held = sorted((n for n in self.nodes.values() if n.worker == w and n.state in ("pending", "released")),
                      key=lambda n: (self.order[n.query.id], n.index))
        # First what was only being prefilled there (overlap): it starts again elsewhere, so that
        # nothing released below goes to the failed engine.
        for n in held:
            if n.state == "pending":
                n.early, n.worker, n.streaming = 0, None, None
        for n in held:
            if n.state != "released":
                continue
            self.inflight[w] -= 1
            for s in n.succ:   # its stream, followed there, is gone: the successor follows it afresh
                if s.streaming is n:
                    s.streaming = None
            if self.replicas[m]:
                n.early, n.worker = 0, None
                self._route(n)
                for s in n.succ:
                    if s.state == "pending":
                        self._prefill_ahead(s)
            else:
                self._fail(n)
        while not self.replicas[m] and self.waiting[m]:   # pull: queued for a model with no engine left
            self._fail(self.waiting[m].pop(0))

    def _model_failed(self, m: str) -> str:
        ws = sorted(w for w, x in self.placement.items() if x == m)
        return f"every engine of {m} failed (worker {ws[0]}: {self.dead[ws[0]]})"

    def _fail(self, n: _Node) -> None:
        """No engine of n's model is left: n fails, and the graph goes on as after a cancel."""
        n.state, n.error = FAILED, self._model_failed(n.spec.model)
        self._record(n, None)
        if n.spec.name == ROOT:
            self._done_query(n.query)
            return
        self._check_releases(n)
        for s in n.succ:
            if s.state == "pending":
                self._prefill_ahead(s)

    def _record(self, n: _Node, f: Finished | None) -> None:
        served = n.state == SERVED
        o = n.outcome if served else None
        self.records[n.rid] = AgentRecord(
            n.rid, n.query.id, n.spec.name, n.spec.layer, n.spec.model,
            n.worker if n.release is not None else None, n.release,
            f.start_s if f else None, f.first_token_s if f else None, f.finish_s if f else self.now,
            n.prompt, f.output_tokens if f else 0, o.answer if o else None, o.confidence if o else None,
            n.state, n.by, f.cached_tokens if f else 0, n.error)

    def _done_query(self, q: Query) -> None:
        graph = self.graphs.pop(q.id)
        root = graph[ROOT]
        count = Counter(n.state for n in graph.values())
        answer = root.outcome.answer if root.state == SERVED else self.answers.get(q.id)
        self.query_records.append(QueryRecord(q.id, self.started[q.id], self.now, self.now - self.started[q.id],
                                              answer, q.gold, answer is not None and answer == q.gold,
                                              count[SERVED], count[CANCELLED], count[FAILED]))
        if self.progress is not None:
            self.progress.update(1)
        if len(self.query_records) == len(self.queries):
            self.pool.close()
        else:
            self._start_query()
