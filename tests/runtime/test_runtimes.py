"""The runtime layer on the simulator: static is the plan bit for bit; pull binds late (work
stealing from replicas that are behind or not started, planned sessions with nothing left skipped,
replicas added on workers done with their plan, K and memory held); the routers bind at release.
Every trace goes through the invariant check (mosaic/runtime/check.py)."""
import pytest

from mosaic.backends.sim.backend import SimBackend
from mosaic.cluster import Cluster, Worker
from mosaic.config.schema import RuntimeConfig
from mosaic.core.errors import ConfigError
from mosaic.costs.predict import build_problem
from mosaic.plan import Plan, Session, WorkerPlan
from mosaic.run.builder import build_run, compose
from mosaic.runtime import available, make_runtime, stage_inputs
from mosaic.runtime.check import TraceError, check_trace
from mosaic.trace import Trace
from mosaic.workload.answer_model import SyntheticSpec
from mosaic.workload.sources.synthetic import generate


@pytest.fixture(scope="module")
def workload(profiles):
    return generate(SyntheticSpec(preset="gpqa", n_queries=400), profiles, seed=3)


def by_model(workload):
    out = {}
    for r in workload.expert_requests():
        out.setdefault(r.model, []).append(r)
    return out


def stage(profiles, workload, cluster, plan, runtime="static", k=None, predicted=None, seed=0, **cfg) -> Trace:
    reqs = [r for wp in plan.workers for s in wp.sessions
            if not s.workers or s.workers[0] == wp.worker for r in s.request_ids]
    requests = {r.id: r for r in workload.expert_requests() if r.id in set(reqs)}
    problem = build_problem("expert", list(requests.values()), cluster, profiles, workload.expert_models)
    rt = None
    if runtime != "static" or cfg:
        inputs = stage_inputs(problem, list(requests.values()), predicted, k, seed)
        rt = make_runtime(RuntimeConfig(name=runtime, **cfg), plan, inputs)
    trace = SimBackend(cluster, profiles).run(plan, requests, workload.outcomes, rt)
    return check_trace(trace, requests.values(), problem.fits, k)


def two_model_plan(workload, first_share=0.5):
    """Model A split over worker 0 (first session) and worker 1 (after a B session); worker 2 idle."""
    m = by_model(workload)
    a, b = sorted(m, key=lambda x: -len(m[x]))[:2]
    ra, rb = [r.id for r in m[a]], [r.id for r in m[b]]
    cut = int(len(ra) * first_share)
    return a, b, Plan("expert", "hand", (
        WorkerPlan(0, (Session(a, tuple(ra[:cut])),)),
        WorkerPlan(1, (Session(b, tuple(rb)), Session(a, tuple(ra[cut:])))),
        WorkerPlan(2, ())))


def test_the_runtimes_are_registered():
    assert {"static", "pull", "least_outstanding", "p2c"} <= set(available())


def test_static_runs_the_plan_bit_for_bit(profiles, workload):
    cluster = Cluster.uniform(3, 80.0)
    _, _, plan = two_model_plan(workload)
    plain = stage(profiles, workload, cluster, plan)
    through = stage(profiles, workload, cluster, plan, "static", order="arrival")   # the Runtime object
    assert plain.to_json() == through.to_json()
    assert all(r.bound_s == next(s.run_start_s for s in plain.sessions if (s.worker, s.index) == (r.worker, r.session))
               for r in plain.requests)


def test_pull_takes_work_a_later_replica_has_not_started_and_adds_replicas(profiles, workload):
    cluster = Cluster.uniform(3, 80.0)
    a, b, plan = two_model_plan(workload, first_share=0.2)
    static = stage(profiles, workload, cluster, plan)
    pull = stage(profiles, workload, cluster, plan, "pull")
    planned_on_1 = set(plan.workers[1].sessions[1].request_ids)
    stolen = [r for r in pull.requests if r.request_id in planned_on_1 and r.worker != 1]
    assert stolen, "no request of the late replica was taken by another one"
    assert any(s.added for s in pull.sessions)          # worker 2, idle in the plan, loads a model
    assert all(s.worker == 2 and s.model in (a, b) for s in pull.sessions if s.added)
    assert pull.makespan_s < 0.95 * static.makespan_s
    # every binding is recorded, at or before the request's start
    assert all(r.bound_s is not None and r.bound_s <= r.start_s + 1e-9 for r in pull.requests)
    # same seed, same trace
    assert stage(profiles, workload, cluster, plan, "pull").to_json() == pull.to_json()


def test_pull_without_additions_and_with_k_1_loads_nothing_beyond_the_plan(profiles, workload):
    cluster = Cluster.uniform(3, 80.0)
    _, _, plan = two_model_plan(workload, first_share=0.2)
    off = stage(profiles, workload, cluster, plan, "pull", add_replicas=False)
    assert not any(s.added for s in off.sessions) and {s.worker for s in off.sessions} == {0, 1}
    # K = 2: worker 1 already plans two models; worker 0 may add only its own model or one more
    k2 = stage(profiles, workload, cluster, plan, "pull", k=2)
    for w in (0, 1, 2):
        assert len({s.model for s in k2.sessions if s.worker == w}) <= 2


def test_pull_never_loads_a_model_where_it_does_not_fit(profiles, workload):
    # worker 2 has too little memory for any model: it stays idle
    cluster = Cluster((Worker(0, 80.0), Worker(1, 80.0), Worker(2, 1.0)))
    _, _, plan = two_model_plan(workload, first_share=0.2)
    pull = stage(profiles, workload, cluster, plan, "pull")
    assert not [s for s in pull.sessions if s.worker == 2]


def test_pull_skips_a_planned_session_left_without_work(profiles, workload):
    # model A on worker 0 (a short session) and, after a long B session, again on worker 1 with a
    # handful of requests: worker 0 takes them before worker 1 gets there, and worker 1 never loads A
    m = by_model(workload)
    a, b = sorted(m, key=lambda x: -len(m[x]))[:2]
    ra = [r.id for r in m[a]]
    plan = Plan("expert", "hand", (WorkerPlan(0, (Session(a, tuple(ra[:20])),)),
                                   WorkerPlan(1, (Session(b, tuple(r.id for r in m[b])), Session(a, tuple(ra[-3:]))))))
    cluster = Cluster.uniform(2, 80.0)
    pull = stage(profiles, workload, cluster, plan, "pull", add_replicas=False)
    assert [s.model for s in pull.sessions if s.worker == 1] == [b]
    assert {r.worker for r in pull.requests if r.request_id in ra[-3:]} == {0}


def test_pull_orders_by_predicted_length_where_there_are_signals(profiles, workload):
    m = by_model(workload)
    a = max(m, key=lambda x: len(m[x]))
    ids = [r.id for r in m[a]][:300]
    plan = Plan("expert", "hand", (WorkerPlan(0, (Session(a, tuple(ids)),)),))
    predicted = {rid: float(i) for i, rid in enumerate(ids)}    # the last planned, the longest predicted
    cluster = Cluster.uniform(1, 80.0)
    for order in ("longest_first", "auto"):
        pull = stage(profiles, workload, cluster, plan, "pull", predicted=predicted, order=order)
        first = sorted(pull.requests, key=lambda r: (r.bound_s, -predicted[r.request_id]))[:5]
        assert [r.request_id for r in first] == ids[::-1][:5]
    arrival = stage(profiles, workload, cluster, plan, "pull", predicted=predicted)   # the default
    assert [r.request_id for r in sorted(arrival.requests, key=lambda r: (r.bound_s, ids.index(r.request_id)))][:5] \
        == ids[:5]
    # without length signals, auto keeps the plan's order
    auto = stage(profiles, workload, cluster, plan, "pull", order="auto")
    assert auto.to_json() == arrival.to_json()


def test_least_outstanding_and_p2c_bind_every_request_at_release(profiles, workload):
    m = by_model(workload)
    a = max(m, key=lambda x: len(m[x]))
    ids = tuple(r.id for r in m[a])
    plan = Plan("expert", "hand", tuple(WorkerPlan(w, (Session(a, ids[w::3]),)) for w in range(3)))
    cluster = Cluster.uniform(3, 80.0)
    lo = stage(profiles, workload, cluster, plan, "least_outstanding")
    counts = [sum(r.worker == w for r in lo.requests) for w in range(3)]
    assert max(counts) - min(counts) <= 1 and all(r.bound_s == 0.0 for r in lo.requests)
    p1 = stage(profiles, workload, cluster, plan, "p2c", seed=1)
    assert p1.to_json() == stage(profiles, workload, cluster, plan, "p2c", seed=1).to_json()
    assert p1.to_json() != stage(profiles, workload, cluster, plan, "p2c", seed=2).to_json()


@pytest.mark.slow
def test_a_run_under_pull_goes_through_the_run_builder(tmp_path):
    base = ["workload=smoke", "cluster.n_workers=3"]
    static = build_run(compose(base)).execute()
    pull = build_run(compose([*base, "runtime=pull"])).execute()
    assert len(pull.expert.trace.requests) == len(static.expert.trace.requests)
    assert pull.expert.trace.makespan_s <= static.expert.trace.makespan_s * 1.01


def test_settings_a_backend_or_shape_cannot_honour_are_refused_by_name():
    with pytest.raises(ConfigError, match=r"runtime=pull: backend=vllm runs only runtime=static"):
        build_run(compose(["runtime=pull", "backend=vllm", "models=tiny"]))
    with pytest.raises(ConfigError, match=r"runtime=pull: offline agent graphs"):
        build_run(compose(["runtime=pull", "topology=dense", "cluster.n_workers=8"]))
    with pytest.raises(ConfigError, match=r"runtime.name: unknown runtime 'fast'"):
        build_run(compose(["runtime.name=fast"]))
    with pytest.raises(ConfigError, match=r"runtime.order"):
        build_run(compose(["runtime=pull", "runtime.order=random"]))


def test_the_trace_check_catches_what_a_runtime_must_not_do(profiles, workload):
    import dataclasses
    cluster = Cluster.uniform(3, 80.0)
    _, _, plan = two_model_plan(workload)
    trace = stage(profiles, workload, cluster, plan)
    reqs = [r for r in workload.expert_requests() if r.id in {x.request_id for x in trace.requests}]
    twice = dataclasses.replace(trace, requests=trace.requests + trace.requests[:1])
    with pytest.raises(TraceError, match="more than once"):
        check_trace(twice, reqs)
    with pytest.raises(TraceError, match="never served"):
        check_trace(dataclasses.replace(trace, requests=trace.requests[1:]), reqs)
    with pytest.raises(TraceError, match="more than K=1"):
        check_trace(trace, reqs, max_models_per_worker=1)
    with pytest.raises(TraceError, match="does not fit"):
        check_trace(trace, reqs, fits={s.model: () for s in trace.sessions})
    s0, s1 = [s for s in trace.sessions if s.worker == 1]
    overlap = dataclasses.replace(trace, sessions=tuple(dataclasses.replace(s, load_start_s=s0.run_start_s)
                                                        if s is s1 else s for s in trace.sessions))
    with pytest.raises(TraceError, match="while"):
        check_trace(overlap, reqs)


def test_pull_settings_under_another_runtime_are_reported_as_not_applied():
    from mosaic.run.app import settings_not_applied
    from mosaic.run.builder import typed
    assert "runtime.order" in settings_not_applied(typed(compose(["runtime.order=longest_first"])))
    assert "runtime.add_replicas" in settings_not_applied(typed(compose(["runtime=p2c", "runtime.add_replicas=false"])))
    assert not [k for k in settings_not_applied(typed(compose(["runtime=pull", "runtime.order=longest_first"])))
                if k.startswith("runtime")]
