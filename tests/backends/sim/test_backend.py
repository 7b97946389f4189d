"""Simulator conservation laws, for every policy."""
import pytest

from mosaic.cluster import Cluster
from mosaic.costs.predict import build_problem
from mosaic.core.errors import ConfigError
from mosaic.plan import Plan
from mosaic.profiles import load_time_s
from mosaic.schedulers import available, schedule
from mosaic.workload.answer_model import SyntheticSpec
from mosaic.workload.sources.synthetic import generate
from mosaic.backends.sim.backend import SimBackend


@pytest.fixture(scope="module")
def workload(profiles):
    return generate(SyntheticSpec(preset="gpqa", n_queries=120), profiles, seed=5)


@pytest.mark.parametrize("policy", available())
def test_conservation(profiles, workload, policy):
    # Three workers, except for the TP policy: the profile has TP scaling for degrees 2 and 4 only.
    cluster = Cluster.uniform(4 if policy == "tensor_parallel" else 3, 80.0)
    reqs = list(workload.expert_requests())
    plan = schedule(policy, build_problem("expert", reqs, cluster, profiles, workload.expert_models), reqs)
    trace = SimBackend(cluster, profiles).run(plan, {r.id: r for r in reqs}, workload.outcomes)

    # Every request finishes exactly once, with its replayed length, inside its session's run span.
    assert sorted(r.request_id for r in trace.requests) == sorted(r.id for r in reqs)
    span = {(s.worker, s.index): s for s in trace.sessions}
    for r in trace.requests:
        s = span[(r.worker, r.session)]
        assert s.model == r.model
        assert s.run_start_s <= r.start_s <= r.first_token_s <= r.finish_s <= s.run_end_s + 1e-9
        assert r.output_tokens == workload.outcomes[r.request_id].output_tokens
    # Loads take the profiled time; a worker never runs two sessions at once.
    for w in range(cluster.n):
        mine = sorted((s for s in trace.sessions if s.worker == w), key=lambda s: s.load_start_s)
        for s in mine:
            assert s.load_end_s - s.load_start_s == pytest.approx(
                load_time_s(profiles.model(s.model), profiles.engine, s.tp_size))
        for a, b in zip(mine, mine[1:]):
            assert a.run_end_s <= b.load_start_s + 1e-9
    # busy + idle = makespan on every worker; makespan = last session end.
    assert trace.makespan_s == pytest.approx(max(s.run_end_s for s in trace.sessions))
    for ws in trace.workers:
        assert ws.idle_s >= -1e-9
        assert ws.busy_s + ws.idle_s == pytest.approx(trace.makespan_s)


def test_empty_plan_gives_empty_trace(profiles):
    cluster = Cluster.uniform(2, 80.0)
    trace = SimBackend(cluster, profiles).run(Plan("aggregator", "ilp", ()), {}, {})
    assert trace.makespan_s == 0 and trace.requests == ()
    assert [w.busy_s for w in trace.workers] == [0.0, 0.0]


def test_sim_needs_replay(profiles, workload):
    with pytest.raises(ConfigError, match="replays"):
        SimBackend(Cluster.uniform(1, 80.0), profiles).run(Plan("expert", "x", ()), {}, None)
