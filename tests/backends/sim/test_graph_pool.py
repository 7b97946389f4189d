"""Agent graphs on the simulator's engine pool (the coordinator driving SimGraphPool): release on
dependency, localized readiness, cancellation accounting and seeded early exit."""
from dataclasses import replace

import numpy as np
import pytest

from mosaic.cluster import Cluster
from mosaic.config.schema import TopologyConfig
from mosaic.core.errors import ConfigError
from mosaic.graphs.early_exit import should_exit
from mosaic.graphs.outcomes import AgentOutcome
from mosaic.graphs.shape import ROOT, graph_shape
from mosaic.profiles import load_profiles
from mosaic.workload.types import Query
from mosaic.graphs.coordinator import GraphCoordinator
from mosaic.backends.sim.backend import SimBackend
from mosaic.backends.sim.graph_pool import SimGraphPool

TREE = TopologyConfig(name="t", kind="tree", branching=3, depth=2, agents=["Qwen", "Gemma", "Exaone"])
QUERIES = tuple(Query(f"q{i}", "c", 100 + 10 * i, "A", ()) for i in range(4))


@pytest.fixture(scope="module")
def profiles():
    p = load_profiles("moa6_a100")
    return replace(p, engine=replace(p.engine, scheduling="v1"))


def fixed(lengths, answers=None):
    """An outcome function: agent -> length (and answer), the same for every query."""
    def outcome(q, agent, index, inputs, room):
        return AgentOutcome(min(room, lengths(agent)), (answers or {}).get(agent.name, "A"), 0.9, True)
    return outcome


def run(profiles, topology=TREE, outcome=None, rule="none", concurrency=1, seed=0, n_workers=4, overlap="none",
        chunk=64, queries=QUERIES):
    shape = graph_shape(topology, "LlamaR1")
    placement = {0: "Qwen", 1: "Gemma", 2: "Exaone", 3: "LlamaR1"}
    placement.update({w: "Qwen" for w in range(4, n_workers)})
    outcome = outcome or fixed(lambda a: 50 + 40 * a.layer + 7 * int(a.name.split(".")[-1] if a.name != ROOT else 0))
    exits = (lambda outs, rng: should_exit(rule, outs, rng)) if rule != "none" else (lambda outs, rng: False)
    coordinator = GraphCoordinator(queries, shape, placement, outcome, exits, rule, concurrency, seed, overlap, chunk)
    return shape, coordinator.run(SimGraphPool(SimBackend(Cluster.uniform(n_workers, 80.0, "A100-80GB"), profiles), profiles, placement))


def test_a_successor_is_released_when_its_own_cluster_is_done(profiles):
    shape, t = run(profiles)
    rec = {r.request_id: r for r in t.requests}
    for q in QUERIES:
        for a in shape:
            r = rec[f"{q.id}/{a.name}"]
            assert r.status == "served" and r.start_s >= r.release_s
            if a.reads:
                inputs = [rec[f"{q.id}/{p}"] for p in a.reads]
                assert r.release_s == max(i.finish_s for i in inputs)          # at once, not later
                assert r.prompt_tokens == q.prompt_tokens + 64 + sum(i.output_tokens for i in inputs)
            else:
                assert r.prompt_tokens == q.prompt_tokens
    # Localized readiness: the first successor starts before the slowest leaf of another cluster ends.
    q0 = [r for r in t.requests if r.query_id == "q0"]
    first_successor = min(r.release_s for r in q0 if r.layer == 2)
    assert first_successor < max(r.finish_s for r in q0 if r.layer == 1)
    # Concurrency 1: a query starts when the one before it ends.
    for a, b in zip(t.queries, t.queries[1:]):
        assert b.start_s == a.finish_s
    assert t.queries[0].start_s == t.ready_s > 0


def test_every_request_is_served_or_cancelled_never_lost(profiles):
    # Leaves of cluster c answer "A" except the slowest, which would disagree: the first two agree.
    answers = {f"L1.{i}": "A" for i in range(9)}
    shape, t = run(profiles, outcome=fixed(lambda a: 30 if a.name.endswith(("0", "1", "3", "4", "6", "7")) else 900,
                                           answers), rule="agreement", concurrency=2)
    assert len(t.requests) == len(QUERIES) * len(shape)
    assert {r.status for r in t.requests} == {"served", "cancelled"}
    cancelled = [r for r in t.requests if r.status == "cancelled"]
    assert cancelled and all(r.cancelled_by == "agreement" for r in cancelled)
    # The slow third agent of every leaf cluster is cancelled once its two siblings agree.
    assert {r.agent for r in cancelled} >= {"L1.2", "L1.5", "L1.8"}
    for r in cancelled:
        assert r.answer is None and (r.worker is None or r.release_s is not None)
    for q in t.queries:
        assert q.served + q.cancelled == len(shape)
        mine = [r for r in t.requests if r.query_id == q.query_id and r.status == "served"]
        assert max(r.finish_s for r in mine) == q.finish_s      # the aggregator ends its query
    assert all(r.status == "served" for r in t.requests if r.agent == ROOT)


def test_early_exit_is_seeded(profiles):
    def outcome(q, agent, index, inputs, room):
        rng = np.random.default_rng([index, int(q.id[1:])])
        return AgentOutcome(int(rng.integers(20, 400)), "AB"[int(rng.integers(0, 2))], float(rng.random()), True)

    _, a = run(profiles, outcome=outcome, rule="qmetric", seed=3)
    _, b = run(profiles, outcome=outcome, rule="qmetric", seed=3)
    assert a == b
    cancelled = {s: {r.request_id for r in run(profiles, outcome=outcome, rule="qmetric", seed=s)[1].requests
                     if r.status == "cancelled"} for s in range(6)}
    assert len({frozenset(v) for v in cancelled.values()}) > 1   # the seed changes which clusters stop


def test_replicas_share_a_model_and_v0_engines_are_refused(profiles):
    _, t = run(profiles, concurrency=4, n_workers=6)
    assert {r.worker for r in t.requests if r.model == "Qwen"} == {0, 4, 5}
    with pytest.raises(ConfigError, match="engine.scheduling=v1"):
        run(replace(profiles, engine=replace(profiles.engine, scheduling="v0")))


def test_overlap_prefills_a_successors_prompt_while_its_precursors_run(profiles):
    star = TopologyConfig(name="s", kind="tree", branching=3, depth=1, agents=["Qwen", "Gemma", "Exaone"])
    lengths = fixed(lambda a: {"L1.0": 300, "L1.1": 600, "L1.2": 1200}.get(a.name, 20))
    _, plain = run(profiles, star, lengths)
    _, ahead = run(profiles, star, lengths, overlap="incremental", chunk=100)
    assert len(ahead.requests) == len(plain.requests) and ahead.prefill_requests > 0
    for a, b in zip(plain.requests, ahead.requests):
        assert (a.request_id, a.prompt_tokens, a.output_tokens) == (b.request_id, b.prompt_tokens, b.output_tokens)
        if b.agent == ROOT:
            # Its prefix and the two shorter outputs were cached before the last precursor finished,
            # and most of the last one too (streamed in chunks of 100): only a chunk is left.
            q = next(q for q in QUERIES if q.id == b.query_id)
            assert b.prompt_tokens - 16 - 100 <= b.cached_tokens < b.prompt_tokens
            assert b.cached_tokens > q.prompt_tokens + 64 + 300 + 600
            assert b.first_token_s - b.release_s < a.first_token_s - a.release_s
        else:
            assert b.cached_tokens == 0


@pytest.mark.parametrize("overlap,rule,concurrency", [("none", "none", 1), ("incremental", "qmetric", 8)])
def test_jumps_over_decode_steps_give_the_trace_of_single_steps(profiles, monkeypatch, overlap, rule, concurrency):
    # Jumps an arrival, a cancel (early exit) or a watch (prefill overlap) cuts short must land every
    # request where stepping one step at a time does (floating-point order aside).
    from mosaic.engine.v1 import V1Engine
    queries = tuple(Query(f"q{i}", "c", 100 + 37 * i, "A", ()) for i in range(24))

    def outcome(q, agent, index, inputs, room):   # lengths vary by query and agent: arrivals land mid-run
        n = [400, 90, 700, 30, 250, 1200][(int(q.id[1:]) + len(agent.name) + 3 * agent.layer) % 6]
        return AgentOutcome(min(room, n), "A", 0.9, True)

    kw = dict(outcome=outcome, rule=rule, concurrency=concurrency, overlap=overlap, seed=2, queries=queries)
    jumped = run(profiles, **kw)[1]
    monkeypatch.setattr(V1Engine, "inbox_jumps", False)
    stepped = run(profiles, **kw)[1]
    a = {r.request_id: r for r in jumped.requests}
    b = {r.request_id: r for r in stepped.requests}
    assert a.keys() == b.keys()
    for rid, r in a.items():
        s = b[rid]
        assert (r.status, r.output_tokens, r.cached_tokens) == (s.status, s.output_tokens, s.cached_tokens)
        for x, y in ((r.start_s, s.start_s), (r.first_token_s, s.first_token_s), (r.finish_s, s.finish_s)):
            assert (x is None) == (y is None) and (x is None or x == pytest.approx(y, rel=1e-9, abs=1e-9)), rid
    assert sum(r.status == "cancelled" for r in jumped.requests) > 0 or rule == "none"


@pytest.mark.slow
def test_jumps_give_the_trace_of_single_steps_on_the_fidelity_suites_graph(monkeypatch):
    # The suite's graph case on the simulator (tiny CPU profile, submit delays, prefill overlap
    # watching requests as their precursors finish): jumps and single steps agree request by request.
    from mosaic.engine.v1 import V1Engine
    from mosaic.run import graph_app
    from mosaic.run.builder import build_run, compose
    overrides = ["workload=smoke", "cluster=cpu2", "workload.profiles=tiny_cpu_confined", "seed=5", "topology=dense",
                 "topology.layers=[3,2]", "topology.agents=[QwenR1]", "topology.aggregator=Exaone",
                 "topology.overlap=incremental", "topology.overlap_chunk=32", "workload.n_queries=32"]
    jumped = graph_app.execute(build_run(compose(overrides)))[0]
    monkeypatch.setattr(V1Engine, "inbox_jumps", False)
    stepped = graph_app.execute(build_run(compose(overrides)))[0]
    b = {r.request_id: r for r in stepped.requests}
    assert len(jumped.requests) == len(b)
    for r in jumped.requests:
        s = b[r.request_id]
        assert (r.worker, r.status, r.output_tokens, r.cached_tokens) == (s.worker, s.status, s.output_tokens,
                                                                          s.cached_tokens)
        assert r.finish_s == pytest.approx(s.finish_s, rel=1e-9, abs=1e-9), r.request_id
