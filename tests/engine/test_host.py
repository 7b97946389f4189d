"""Host contention in the simulator: steps scale by the number of the host's workers serving."""
from dataclasses import replace

import pytest

from mosaic.cluster import Cluster
from mosaic.plan import Plan, Session, WorkerPlan
from mosaic.profiles import load_profiles
from mosaic.profiles.engine import HostContentionProfile
from mosaic.workload.types import Outcome, Request
from mosaic.backends.sim.backend import SimBackend

SCALE = {1: 0.5, 2: 1.0}


@pytest.fixture(scope="module")
def tiny():
    p = load_profiles("tiny_cpu")
    # All requests handed over at once (no client submit delay, which is not an engine step), so an
    # engine's time is all steps.
    return replace(p, engine=replace(p.engine, submit_ms=0.0,
                                     host_contention=HostContentionProfile(dict(SCALE), "test")))


def _requests(model: str, n: int, out: int, tag: str):
    reqs = {f"{tag}{i}": Request(f"{tag}{i}", f"q{i}", model, 64, "expert") for i in range(n)}
    return reqs, {rid: Outcome(out, "A") for rid in reqs}


def _serving(tiny, cluster, sessions):
    """Each worker's engine time (run start to end, warm-up excluded) for {worker: (model, n, out)}."""
    reqs, outs, workers = {}, {}, []
    for w, (model, n, out) in sessions.items():
        r, o = _requests(model, n, out, f"w{w}-")
        reqs.update(r)
        outs.update(o)
        workers.append(WorkerPlan(w, (Session(model, tuple(r)),)))
    trace = SimBackend(cluster, tiny).run(Plan("expert", "test", tuple(workers)), reqs, outs)
    return {s.worker: s.run_end_s - s.run_start_s - tiny.model(s.model).warmup_s for s in trace.sessions}


def _profiled(tiny):
    """The same profiles without a contention table: every step at its profiled cost."""
    return replace(tiny, engine=replace(tiny.engine, host_contention=None))


def test_a_session_alone_on_its_host_runs_at_the_solo_scale(tiny):
    alone = _serving(tiny, Cluster.uniform(2, 80.0, "cpu", workers_per_host=2), {0: ("Qwen", 8, 40)})
    profiled = _serving(_profiled(tiny), Cluster.uniform(2, 80.0, "cpu", workers_per_host=2), {0: ("Qwen", 8, 40)})
    assert alone[0] == pytest.approx(SCALE[1] * profiled[0])


def test_workers_on_hosts_of_their_own_run_at_the_solo_scale(tiny):
    """workers_per_host=1: no worker shares its host, so each runs as one busy worker. Before, the
    contention table was dropped there and every step kept the cost profiled with the host full
    (the tiny CPU profile: a lone worker's expert stage 129.6 s with 1 per host, 114.4 s with 2)."""
    both = {0: ("Qwen", 8, 40), 1: ("GLM", 8, 40)}
    apart = _serving(tiny, Cluster.uniform(2, 80.0, "cpu", workers_per_host=1), both)
    profiled = _serving(_profiled(tiny), Cluster.uniform(2, 80.0, "cpu", workers_per_host=1), both)
    assert apart == pytest.approx({w: SCALE[1] * t for w, t in profiled.items()})


def test_two_busy_workers_run_at_the_profiled_cost(tiny):
    """Both workers serve the same session from the same moment: every step sees 2 busy, scale 1."""
    shared = _serving(tiny, Cluster.uniform(2, 80.0, "cpu", workers_per_host=2), {0: ("Qwen", 8, 40), 1: ("Qwen", 8, 40)})
    without = replace(tiny, engine=replace(tiny.engine, host_contention=None))
    plain = _serving(without, Cluster.uniform(2, 80.0, "cpu", workers_per_host=2), {0: ("Qwen", 8, 40), 1: ("Qwen", 8, 40)})
    assert shared == pytest.approx(plain)


def test_the_longer_session_speeds_up_once_its_neighbour_ends(tiny):
    """Worker 0 outlives worker 1: its steps after worker 1 ends run at the solo scale, so its
    session lies strictly between all-solo and all-contended."""
    sessions = {0: ("Qwen", 8, 200), 1: ("Qwen", 8, 20)}
    mixed = _serving(tiny, Cluster.uniform(2, 80.0, "cpu", workers_per_host=2), sessions)[0]
    contended = _serving(replace(tiny, engine=replace(tiny.engine, host_contention=None)),
                         Cluster.uniform(2, 80.0, "cpu", workers_per_host=2), sessions)[0]
    assert SCALE[1] * contended < mixed < contended


def test_workers_on_different_hosts_do_not_interact(tiny):
    """4 workers, 2 per host: worker 2 (host 1) is alone though workers 0 and 1 (host 0) serve."""
    got = _serving(tiny, Cluster.uniform(4, 80.0, "cpu", workers_per_host=2),
                   {0: ("Qwen", 8, 40), 1: ("Qwen", 8, 40), 2: ("Qwen", 8, 40)})
    assert got[2] == pytest.approx(SCALE[1] * got[0])


def test_scale_interpolates_between_measured_counts():
    hc = HostContentionProfile({1: 0.6, 4: 1.0}, "x")
    assert [hc.scale(b) for b in (1, 2, 4)] == pytest.approx([0.6, 0.6 + 0.4 / 3, 1.0])
    assert hc.profiled_workers == 4


def test_a_model_measured_on_its_own_uses_its_own_scale(tiny):
    own = replace(tiny, engine=replace(tiny.engine, host_contention=HostContentionProfile(
        dict(SCALE), "test", models={"Qwen": {1: 0.8, 2: 1.0}})))
    apart = _serving(_profiled(tiny), Cluster.uniform(2, 80.0, "cpu", workers_per_host=1),
                     {0: ("Qwen", 8, 40), 1: ("GLM", 8, 40)})
    alone_q = _serving(own, Cluster.uniform(2, 80.0, "cpu", workers_per_host=2), {0: ("Qwen", 8, 40)})
    alone_g = _serving(own, Cluster.uniform(2, 80.0, "cpu", workers_per_host=2), {1: ("GLM", 8, 40)})
    assert alone_q[0] == pytest.approx(0.8 * apart[0]) and alone_g[1] == pytest.approx(SCALE[1] * apart[1])


def test_a_load_alone_on_its_host_takes_the_solo_share_of_the_profiled_load(tiny):
    loads = replace(tiny, engine=replace(tiny.engine, host_contention=HostContentionProfile(
        dict(SCALE), "test", load_scale={1: 0.6, 2: 1.0})))
    cluster = Cluster.uniform(2, 80.0, "cpu", workers_per_host=2)

    def load_times(sessions):
        reqs, outs, workers = {}, {}, []
        for w, model in sessions.items():
            r, o = _requests(model, 2, 5, f"w{w}-")
            reqs.update(r)
            outs.update(o)
            workers.append(WorkerPlan(w, (Session(model, tuple(r)),)))
        trace = SimBackend(cluster, loads).run(Plan("expert", "test", tuple(workers)), reqs, outs)
        return {s.worker: s.load_end_s - s.load_start_s for s in trace.sessions}

    profiled = tiny.model("LlamaR1").load_time_s
    assert load_times({0: "LlamaR1"})[0] == pytest.approx(0.6 * profiled)
    assert load_times({0: "LlamaR1", 1: "LlamaR1"}) == pytest.approx({0: profiled, 1: profiled})


def test_a_profile_measured_by_batch_scales_each_step_by_its_running_sequences():
    """by_batch: 1 sequence -> 0.8, 32 -> 0.5 alone; between, linear in log(sequences); beyond the
    measured batches, the nearest; without a batch (or for another model), the flat table."""
    hc = HostContentionProfile(dict(SCALE), "x", models={"Qwen": {1: 0.6, 2: 1.0}},
                               by_batch={"Qwen": {1: {1: 0.8, 2: 1.0}, 32: {1: 0.5, 2: 1.0}}})
    assert hc.scale(1, "Qwen", 1) == pytest.approx(0.8)
    assert hc.scale(1, "Qwen", 32) == pytest.approx(0.5)
    assert hc.scale(1, "Qwen", 64) == pytest.approx(0.5)
    # 4 sequences: log(4)/log(32) = 2/5 of the way from 1 to 32
    assert hc.scale(1, "Qwen", 4) == pytest.approx(0.8 + (0.5 - 0.8) * 2 / 5)
    assert hc.scale(2, "Qwen", 4) == pytest.approx(1.0)
    assert hc.scale(1, "Qwen") == pytest.approx(0.6) and hc.scale(1, "GLM", 1) == pytest.approx(SCALE[1])


def test_a_lone_session_of_one_sequence_runs_at_the_one_sequence_scale(tiny):
    """The V1 engine's steps carry their batch to the host: a lone one-request session runs at the
    one-sequence factor, an eight-request session (measured at 1 and 8) at the eight-sequence one."""
    by = replace(tiny, engine=replace(tiny.engine, host_contention=HostContentionProfile(
        dict(SCALE), "test", models={"Qwen": {1: 0.5, 2: 1.0}},
        by_batch={"Qwen": {1: {1: 0.9, 2: 1.0}, 8: {1: 0.5, 2: 1.0}}})))
    shared, apart = (Cluster.uniform(2, 80.0, "cpu", workers_per_host=k) for k in (2, 1))
    one_alone = _serving(by, shared, {0: ("Qwen", 1, 40)})[0]
    one_apart = _serving(_profiled(tiny), apart, {0: ("Qwen", 1, 40)})[0]
    assert one_alone == pytest.approx(0.9 * one_apart)
    eight_alone = _serving(by, shared, {0: ("Qwen", 8, 40)})[0]
    eight_apart = _serving(_profiled(tiny), apart, {0: ("Qwen", 8, 40)})[0]
    assert eight_alone == pytest.approx(0.5 * eight_apart)


def _host_with_spin(tiny, spin, weight=1.0):
    import simpy

    from mosaic.engine.host import HostLoad

    engine = replace(tiny.engine, host_contention=HostContentionProfile(dict(SCALE), "test", idle_spin_s=spin,
                                                                        spin_weight=weight))
    env = simpy.Environment()
    return env, HostLoad(env, Cluster.uniform(2, 80.0, "cpu", workers_per_host=2), engine)


@pytest.mark.parametrize("spin, weight, expected", [
    (0.0, 1.0, 2.0 * SCALE[1]), (1.0, 1.0, 1.0 + 1.0 * SCALE[1]), (5.0, 1.0, 2.0),
    # half a busy worker: 1.5 busy -> scale 0.75 for 1 s (1/0.75 s of work), the rest alone at 0.5
    (1.0, 0.5, 1.0 + (2.0 - 1.0 / 0.75) * SCALE[1])])
def test_an_idle_engine_keeps_its_host_busy_for_its_spin_time(tiny, spin, weight, expected):
    """Worker 0 runs out of requests at t=0 while worker 1 starts 2 s of profiled work: for the
    spin time worker 0 still counts as its spin weight of a busy worker, then worker 1 is alone."""
    env, host = _host_with_spin(tiny, spin, weight)
    host.start((0,))
    host.start((1,))
    host.idle(0)
    done = {}

    def work():
        yield from host.elapse(1, "Qwen", 2.0)
        done["t"] = env.now

    env.process(work())
    env.run()
    assert done["t"] == pytest.approx(expected)
    assert host.busy[0] == pytest.approx(1)   # worker 0 stopped, worker 1 still counted until it stops


def test_an_engine_that_gets_work_while_spinning_is_not_counted_twice(tiny):
    """idle at 0, work again at 0.5 (still spinning: no second start), idle again at 0.6: it stops
    1 s after that, at 1.6, not at 1.0 (the first idle's stop was withdrawn)."""
    env, host = _host_with_spin(tiny, 1.0)
    host.start((0,))
    seen = {}

    def worker0():
        host.idle(0)
        yield env.timeout(0.5)
        host.resume(0)
        assert host.busy[0] == 1
        yield env.timeout(0.1)
        host.idle(0)

    def probe():
        for t in (1.1, 1.7):
            yield env.timeout(t - env.now)
            seen[t] = host.busy[0]

    env.process(worker0())
    env.process(probe())
    env.run()
    assert seen == {1.1: 1, 1.7: 0}
