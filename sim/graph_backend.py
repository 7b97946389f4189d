"""SimPy execution of agent graphs (topology=dense|tree): every model of the graph stays loaded on
its workers for the whole run, one V1 engine each (sim/engine_v1.py with an Inbox), and each
query's agent requests are handed to an engine as their precursors finish.

The order of events: all workers start and load their models at once; once every engine is
ready, `concurrency` queries start (the next one as soon as one finishes). A released request goes
to the replica of its model with the fewest requests in flight (ties: the lower worker id), its
prompt its prefix plus the outputs it reads, its outcome from the answer model. When an agent
finishes, its cluster's early-exit rule may cancel the siblings still unfinished (and, with them,
the precursors only they read); then every successor whose precursors are all done or cancelled
is released. A query ends with its aggregator. Every agent request ends served or cancelled:
none is lost (checked at the end).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Callable

import numpy as np
import simpy

from mosaic.cluster import Cluster
from mosaic.core.errors import ConfigError
from mosaic.core.progress import bar
from mosaic.graphs.outcomes import AgentOutcome
from mosaic.graphs.shape import ROOT, AgentSpec
from mosaic.graphs.trace import CANCELLED, SERVED, AgentRecord, GraphTrace, QueryRecord
from mosaic.profiles import ProfileSet, load_time_s
from mosaic.trace import SessionRecord, worker_stats
from mosaic.workload.types import Query
from sim.backend import session_engine
from sim.engine_v1 import Inbox, V1Engine

# Tokens of instructions around a successor's question and the outputs it reads (as the flat
# pipeline's aggregator prompt: mosaic/run/pipeline.py AGGREGATOR_TEMPLATE_TOKENS).
TEMPLATE_TOKENS = 64
_EXIT_STREAM = 0xE817   # the early-exit draws' generator, apart from the answer model's

# outcome(query, agent, agent index, outcomes read, output room) -> the agent's outcome
OutcomeFn = Callable[[Query, AgentSpec, int, list[AgentOutcome], int], AgentOutcome]
# exits(outcomes of a cluster's finished agents, the cluster's generator) -> cancel the rest?
ExitFn = Callable[[list[AgentOutcome], np.random.Generator], bool]


class _Node:
    __slots__ = ("spec", "index", "rid", "state", "worker", "release", "prompt", "outcome", "seq", "by", "succ")

    def __init__(self, spec: AgentSpec, index: int, rid: str):
        self.spec, self.index, self.rid = spec, index, rid
        self.state = "pending"          # pending -> released -> served | cancelled
        self.worker: int | None = None
        self.release: float | None = None
        self.prompt: int | None = None
        self.outcome: AgentOutcome | None = None
        self.seq = None
        self.by = ""
        self.succ: list[_Node] = []


def run_graphs(queries: tuple[Query, ...], shape: tuple[AgentSpec, ...], placement: dict[int, str],
               cluster: Cluster, profiles: ProfileSet, outcome: OutcomeFn, exits: ExitFn, exit_rule: str,
               concurrency: int, seed: int) -> GraphTrace:
    """Run every query's graph (module docstring); `exits` decides a cluster's early exit (its
    cancellations are recorded as by `exit_rule`), `seed` seeds each cluster's generator."""
    engine_cfg = profiles.engine
    if engine_cfg.scheduling != "v1":
        raise ConfigError("agent graphs run on the V1 engine model (requests join a running engine between "
                          "steps); set engine.scheduling=v1")
    env = simpy.Environment()
    memory = {w.id: w.memory_gib for w in cluster.workers}
    engines: dict[int, V1Engine] = {}
    inbox = {w: Inbox() for w in placement}
    wake: dict[int, simpy.Event | None] = {w: None for w in placement}
    inflight = {w: 0 for w in placement}
    replicas: dict[str, list[int]] = defaultdict(list)
    for w, m in sorted(placement.items()):
        replicas[m].append(w)
    limit = {}   # per model: tokens a request may hold (context window, KV cache)
    for m in replicas:
        eng = session_engine(profiles.model(m), engine_cfg, min(memory[w] for w in replicas[m]))
        limit[m] = min(engine_cfg.max_model_len, eng.kv_blocks * eng.block_size)
        if limit[m] < 2:
            raise ConfigError(f"topology: model {m} has no room for a request's KV cache on a "
                              f"{min(memory[w] for w in replicas[m])} GiB worker; use bigger workers")
    records: dict[str, AgentRecord] = {}
    query_records: list[QueryRecord] = []
    sessions: list[SessionRecord] = []
    truncated = [0]
    ready = [env.event() for _ in placement]
    exit_rng: dict[tuple[str, str], np.random.Generator] = {}
    graphs: dict[str, dict[str, _Node]] = {}
    started: dict[str, float] = {}
    by_rid: dict[str, _Node] = {}
    todo = list(queries)
    order = {q.id: i for i, q in enumerate(queries)}
    qmap = {q.id: q for q in queries}
    finished_queries = [0]
    all_done = env.event()

    def poke(w: int) -> None:
        ev = wake[w]
        if ev is not None and not ev.triggered:
            ev.succeed()

    def build(q: Query) -> dict[str, _Node]:
        nodes = {a.name: _Node(a, i, f"{q.id}/{a.name}") for i, a in enumerate(shape)}
        for n in nodes.values():
            for r in n.spec.reads:
                nodes[r].succ.append(n)
            by_rid[n.rid] = n
        return nodes

    def start_query() -> None:
        if not todo:
            return
        q = todo.pop(0)
        graphs[q.id] = build(q)
        started[q.id] = env.now
        for n in graphs[q.id].values():
            if not n.spec.reads:
                release(q, n)

    def release(q: Query, n: _Node) -> None:
        nodes = graphs[q.id]
        inputs = [nodes[r] for r in n.spec.reads if nodes[r].state == SERVED]
        m = n.spec.model
        prompt = q.prompt_tokens + (TEMPLATE_TOKENS + sum(i.outcome.output_tokens for i in inputs) if n.spec.reads
                                    else 0)
        if prompt > limit[m] - 1:   # the tail of what it reads is cut to fit, counted
            prompt = limit[m] - 1
            truncated[0] += 1
        n.prompt = prompt
        n.outcome = outcome(q, n.spec, n.index, [i.outcome for i in inputs], limit[m] - prompt)
        w = min(replicas[m], key=lambda w: (inflight[w], w))
        n.state, n.worker, n.release = "released", w, env.now
        inflight[w] += 1
        inbox[w].arrivals.append((n.rid, prompt, n.outcome.output_tokens))
        poke(w)

    def cancel(q: Query, n: _Node, rule: str) -> None:
        if n.state in (SERVED, CANCELLED):
            return
        was_released = n.state == "released"
        n.state, n.by = CANCELLED, rule
        if was_released:
            inbox[n.worker].cancels.add(n.rid)
            poke(n.worker)
        else:
            record(q, n, None)
        nodes = graphs[q.id]
        for r in n.spec.reads:   # a precursor no live successor reads is cancelled with it
            p = nodes[r]
            if p.state in ("pending", "released") and all(s.state == CANCELLED for s in p.succ):
                cancel(q, p, rule)

    def record(q: Query, n: _Node, seq) -> None:
        o = n.outcome if n.state == SERVED else None
        records[n.rid] = AgentRecord(
            n.rid, q.id, n.spec.name, n.spec.layer, n.spec.model, n.worker, n.release,
            seq.start if seq is not None else None, seq.first_token if seq is not None else None,
            seq.finish if seq is not None and n.state == SERVED else (env.now if n.state == CANCELLED else None),
            n.prompt, seq.generated if seq is not None else 0, o.answer if o else None,
            o.confidence if o else None, n.state, n.by)

    def check_releases(q: Query, n: _Node) -> None:
        nodes = graphs[q.id]
        for s in n.succ:
            if s.state == "pending" and all(nodes[r].state in (SERVED, CANCELLED) for r in s.spec.reads):
                release(q, s)

    def finished(w: int, seq) -> None:
        inflight[w] -= 1
        n = by_rid[seq.rid]
        q = qmap[n.rid.rsplit("/", 1)[0]]
        if seq.cancelled or n.state == CANCELLED:   # aborted, or finished in the step its cancel came in
            n.state = CANCELLED
            record(q, n, seq)
            return
        n.state = SERVED
        record(q, n, seq)
        nodes = graphs[q.id]
        if n.spec.name == ROOT:
            done_query(q)
            return
        cl = n.spec.cluster
        siblings = [s for s in nodes.values() if s.spec.cluster == cl]
        rng = exit_rng.setdefault((q.id, cl), np.random.default_rng([seed, _EXIT_STREAM, order[q.id], n.spec.layer,
                                                                     int(cl.rsplit("c", 1)[1])]))
        outs = [s.outcome for s in siblings if s.state == SERVED]
        if any(s.state in ("pending", "released") for s in siblings) and exits(outs, rng):
            for s in siblings:
                cancel(q, s, exit_rule)
        for s in siblings:   # a successor may now have every precursor done or cancelled
            check_releases(q, s)

    def done_query(q: Query) -> None:
        nodes = graphs.pop(q.id)
        root = nodes[ROOT]
        served = sum(n.state == SERVED for n in nodes.values())
        cancelled = sum(n.state == CANCELLED for n in nodes.values())
        query_records.append(QueryRecord(q.id, started[q.id], env.now, env.now - started[q.id], root.outcome.answer,
                                         q.gold, root.outcome.answer == q.gold, served, cancelled))
        finished_queries[0] += 1
        progress.update(1)
        if finished_queries[0] == len(queries):
            all_done.succeed()
        else:
            start_query()

    def engine_proc(w: int, i: int):
        m = profiles.model(placement[w])
        yield env.timeout(engine_cfg.worker_startup_s)
        load_start = env.now
        yield env.timeout(load_time_s(m, engine_cfg, 1) + m.warmup_s)
        load_end = env.now
        eng = engines[w] = session_engine(m, engine_cfg, memory[w])
        ready[i].succeed()
        for dur in eng.run([], lambda: env.now, inbox[w]):
            # What the last step finished, reported when the engine resumed after it (now): their
            # successors may come to this very engine, so before it waits for arrivals.
            while inbox[w].finished:
                finished(w, inbox[w].finished.pop(0))
            if dur is None:
                if inbox[w].arrivals or inbox[w].cancels or inbox[w].closed:
                    continue
                wake[w] = env.event()
                yield wake[w]
                wake[w] = None
            else:
                yield env.timeout(dur)
        served = sum(1 for s in eng.result.seqs if not s.cancelled)
        sessions.append(SessionRecord(w, 0, m.name, load_start, load_end, load_end, env.now, served,
                                      eng.result.preemptions))

    def driver():
        yield env.all_of(ready)
        ready_at[0] = env.now
        for _ in range(min(concurrency, len(queries))):
            start_query()
        if queries:
            yield all_done
        for w in placement:
            inbox[w].closed = True
            poke(w)

    ready_at = [0.0]
    for i, w in enumerate(sorted(placement)):
        env.process(engine_proc(w, i))
    env.process(driver())
    with bar(len(queries), "agent graphs (simulated)") as progress:
        env.run()
    expected = len(queries) * len(shape)
    if len(records) != expected or len(query_records) != len(queries):   # pragma: no cover - an invariant
        raise RuntimeError(f"agent graphs: {expected - len(records)} requests and "
                           f"{len(queries) - len(query_records)} queries unaccounted for")
    makespan = max((s.run_end_s for s in sessions), default=0.0)
    position = {a.name: i for i, a in enumerate(shape)}
    reqs = tuple(sorted(records.values(), key=lambda r: (order[r.query_id], position[r.agent])))
    qs = tuple(sorted(query_records, key=lambda r: order[r.query_id]))
    sess = tuple(sorted(sessions, key=lambda s: s.worker))
    return GraphTrace("sim", makespan, ready_at[0], reqs, qs, sess,
                      worker_stats(sess, [w.id for w in cluster.workers], makespan), truncated[0])
