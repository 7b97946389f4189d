"""An engine that fails in an agent-graph run: what it held goes to another replica of its model, or
fails with the reason; the graph goes on without it; every request ends served, cancelled or failed.

Driven by a scripted pool (one request finishes per time unit, on the live worker with the oldest
work), so each failure lands at a known point of the run."""
from mosaic.config.schema import TopologyConfig
from mosaic.graphs.coordinator import GraphCoordinator
from mosaic.graphs.outcomes import AgentOutcome
from mosaic.graphs.shape import ROOT, graph_shape
from mosaic.graphs.trace import Finished
from mosaic.trace import SessionRecord
from mosaic.workload.types import Query

TREE = TopologyConfig(name="t", kind="tree", branching=3, depth=2, agents=["Qwen", "Gemma", "Exaone"])
QUERIES = tuple(Query(f"q{i}", "c", 100, "A", ()) for i in range(4))


class ScriptedPool:
    """Serves one queued request per time unit; worker w fails once it has finished fail_after[w]
    requests (0: it fails loading)."""
    backend, natural = "scripted", False

    def __init__(self, placement, fail_after):
        self.placement, self.fail_after = placement, fail_after
        self.queue = {w: [] for w in placement}
        self.done = {w: 0 for w in placement}
        self.dead, self.closed, self.failed_at = set(), False, {}
        self.submitted_to_dead = []

    def limits(self):
        return {m: 100_000 for m in self.placement.values()}

    def submit(self, worker, rid, prompt_tokens, output_tokens, key=None, text=None):
        if worker in self.dead:
            self.submitted_to_dead.append(rid)
        self.queue[worker].append(rid)

    def watch(self, worker, rid, every):
        pass

    def cancel(self, worker, rid):
        self.queue[worker].remove(rid)
        self.cancels.append(rid)

    def close(self):
        self.closed = True

    def run(self, on_ready, on_finished, on_progress, on_failed):
        self.cancels, t = [], 0.0
        for w, k in sorted(self.fail_after.items()):
            if k == 0:
                self.dead.add(w)
                self.failed_at[w] = t
                on_failed(t, w, f"engine {w} would not load")
        on_ready(1.0)
        t = 1.0
        while not self.closed or self.cancels:
            while self.cancels:
                on_finished(t, Finished(self.cancels.pop(0), None, None, t, 0, True))
            if self.closed:
                break
            live = [w for w in sorted(self.queue) if w not in self.dead and self.queue[w]]
            assert live, "the coordinator left work nowhere and did not close the pool"
            w = live[0]
            t += 1.0
            rid = self.queue[w].pop(0)
            self.done[w] += 1
            on_finished(t, Finished(rid, t - 1.0, t - 0.5, t, 10, False))
            if self.done[w] == self.fail_after.get(w):
                self.dead.add(w)
                self.failed_at[w] = t
                lost, self.queue[w] = self.queue[w], []
                self.lost = lost
                on_failed(t, w, f"engine {w} crashed")
        return [SessionRecord(w, 0, m, 0.0, 1.0, 1.0, t, self.done[w]) for w, m in sorted(self.placement.items())], t


def run(placement, fail_after, concurrency=2, rule="none", exits=lambda outs, rng: False, queries=QUERIES):
    shape = graph_shape(TREE, "LlamaR1")
    outcome = lambda q, agent, index, inputs, room: AgentOutcome(10, "A", 0.9, True)  # noqa: E731
    pool = ScriptedPool(placement, fail_after)
    trace = GraphCoordinator(queries, shape, placement, outcome, exits, rule, concurrency, 0).run(pool)
    return shape, pool, trace


def accounted(shape, trace, n=len(QUERIES)):
    assert len(trace.requests) == n * len(shape) and len(trace.queries) == n
    for q in trace.queries:
        assert q.served + q.cancelled + q.failed == len(shape)


PLACEMENT = {0: "Qwen", 1: "Gemma", 2: "Exaone", 3: "LlamaR1", 4: "Qwen"}


def test_a_replica_that_fails_hands_what_it_held_to_another_replica():
    shape, pool, t = run(PLACEMENT, {4: 2})
    accounted(shape, t)
    assert pool.lost, "the failure should catch requests on the engine"
    assert {r.status for r in t.requests} == {"served"} and all(q.answer == "A" for q in t.queries)
    moved = {r.request_id: r for r in t.requests if r.request_id in pool.lost}
    assert all(r.worker == 0 and r.finish_s > pool.failed_at[4] for r in moved.values())
    # Nothing went to the failed engine after it failed.
    assert not pool.submitted_to_dead
    assert not [r for r in t.requests if r.worker == 4 and r.finish_s > pool.failed_at[4]]


def test_a_model_with_no_engine_left_fails_its_requests_and_the_graph_goes_on_without_them():
    shape, pool, t = run(PLACEMENT, {2: 0})   # the one Exaone engine never loads
    accounted(shape, t)
    failed = [r for r in t.requests if r.status == "failed"]
    exaone = [a for a in shape if a.model == "Exaone"]
    assert exaone and {r.model for r in failed} == {"Exaone"} and len(failed) == len(exaone) * len(QUERIES)
    assert all(r.error == "every engine of Exaone failed (worker 2: engine 2 would not load)" for r in failed)
    assert all(r.answer is None and r.output_tokens == 0 for r in failed)
    rec = {r.request_id: r for r in t.requests}
    for q in t.queries:
        assert q.failed == len(exaone) and q.answer == "A"       # its aggregator still answered
        # An agent that reads others read only the served ones (10 tokens each).
        for a in shape:
            if a.reads:
                served = sum(rec[f"{q.query_id}/{p}"].status == "served" for p in a.reads)
                assert served < len(a.reads) or a.name == ROOT
                assert rec[f"{q.query_id}/{a.name}"].prompt_tokens == 100 + 64 + 10 * served
    assert not pool.submitted_to_dead


def test_a_failed_aggregator_leaves_its_query_without_an_answer_and_the_run_ends():
    shape, pool, t = run(PLACEMENT, {3: 1}, concurrency=1)   # LlamaR1 (the root) serves one, then fails
    accounted(shape, t)
    roots = {r.query_id: r for r in t.requests if r.agent == ROOT}
    assert roots["q0"].status == "served" and t.queries[0].answer == "A" and t.queries[0].correct
    for q in t.queries[1:]:
        assert roots[q.query_id].status == "failed" and q.answer is None and not q.correct and q.failed == 1
        # Its other agents were served before the aggregator was released.
        assert q.served == len(shape) - 1


def test_an_early_exit_that_releases_a_failing_aggregator_ends_its_query_once():
    """The exit cancels the rest of the last layer's cluster, which releases the aggregator, which
    fails at once (no engine of its model): the query ends there, and the rest of the exit's work
    does not look for it again (it raised KeyError)."""
    shape, pool, t = run(PLACEMENT, {3: 0}, rule="agreement", exits=lambda outs, rng: len(outs) >= 2)
    accounted(shape, t)
    assert all(q.answer is None and q.cancelled > 0 for q in t.queries)


def test_queries_that_end_as_they_start_do_not_nest():
    """Every engine fails loading: each query ends while it starts, starting the next (300 nested
    starts overflowed the stack)."""
    queries = tuple(Query(f"q{i}", "c", 100, "A", ()) for i in range(300))
    shape, pool, t = run(PLACEMENT, {w: 0 for w in PLACEMENT}, queries=queries)
    accounted(shape, t, 300)
    assert {r.status for r in t.requests} == {"failed"} and all(q.answer is None for q in t.queries)
