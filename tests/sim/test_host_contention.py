"""Host contention in the simulator: steps scale by the number of the host's workers serving."""
from dataclasses import replace

import pytest

from mosaic.cluster import Cluster
from mosaic.plan import Plan, Session, WorkerPlan
from mosaic.profiles import load_profiles
from mosaic.profiles.engine import HostContentionProfile
from mosaic.workload.types import Outcome, Request
from sim.backend import SimBackend

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


def test_a_session_alone_on_its_host_runs_at_the_solo_scale(tiny):
    alone = _serving(tiny, Cluster.uniform(2, 80.0, "cpu", workers_per_host=2), {0: ("Qwen", 8, 40)})
    apart = _serving(tiny, Cluster.uniform(2, 80.0, "cpu", workers_per_host=1), {0: ("Qwen", 8, 40)})
    assert alone[0] == pytest.approx(SCALE[1] * apart[0])


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
    apart = _serving(tiny, Cluster.uniform(2, 80.0, "cpu", workers_per_host=1), {0: ("Qwen", 8, 40), 1: ("GLM", 8, 40)})
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
