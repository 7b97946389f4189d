"""Agent graphs on the vLLM engine pool: worker processes that take requests while they run and
stream every finished one back. Fast: the fake engine (tests/fake_vllm); slow: real tiny models."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
from tests.cli.test_run_cli import fake_vllm_env  # noqa: E402

GRAPH = ("workload=smoke", "workload.n_queries=8", "topology=dense", "topology.layers=[3,2]",
         "topology.agents=[Qwen]", "topology.aggregator=Exaone", "cluster=cpu2", "topology.early_exit=agreement",
         "topology.overlap=incremental", "topology.overlap_chunk=8")


def cli(*args, env=None):
    return subprocess.run([sys.executable, str(ROOT / "experiments" / "run.py"), *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=600, env=env)


def rows(d, name):
    return list(csv.DictReader(open(d / name)))


def check_against_the_simulator(real_dir, sim_dir, n_queries=8):
    real, sim = {r["request_id"]: r for r in rows(real_dir, "trace.csv")}, {r["request_id"]: r for r in rows(sim_dir, "trace.csv")}
    assert set(real) == set(sim) and len(real) == n_queries * 6   # every request of every graph, once
    assert {r["status"] for r in real.values()} <= {"served", "cancelled"}
    statuses = {}
    for run in (real, sim):
        for rid, r in run.items():
            statuses.setdefault((id(run), r["query_id"]), []).append(r["status"])
    for rid, r in real.items():
        q = r["query_id"]
        same_exits = statuses[(id(real), q)] == statuses[(id(sim), q)]
        if r["status"] == "served" and sim[rid]["status"] == "served" and (r["layer"] == "1" or same_exits):
            # Replay: the same prompt and output lengths as the simulated run of the same graph (a
            # successor's prompt depends on which precursors finished first: compared where both
            # runs cancelled the same agents).
            assert (r["prompt_tokens"], r["output_tokens"]) == (sim[rid]["prompt_tokens"], sim[rid]["output_tokens"])
        if r["status"] == "served":
            assert float(r["release_s"]) <= float(r["start_s"]) <= float(r["first_token_s"]) <= float(r["finish_s"])
    s = json.loads((real_dir / "summary.json").read_text())
    assert s["backend"] == "vllm" and s["n_served_requests"] + s["n_cancelled_requests"] == n_queries * 6
    assert all(float(q["latency_s"]) > 0 for q in rows(real_dir, "queries.csv"))


@pytest.fixture(scope="module")
def sim_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("graph_sim")
    p = cli(*GRAPH, f"hydra.run.dir={d}")
    assert p.returncode == 0, p.stderr
    return d


@pytest.mark.slow
def test_graphs_on_the_vllm_pool_account_for_every_request(tmp_path, sim_run):
    p = cli(*GRAPH, "backend=vllm", "models=paper", "backend.options.device=cpu", f"hydra.run.dir={tmp_path}",
            env=fake_vllm_env())
    assert p.returncode == 0, p.stderr
    check_against_the_simulator(tmp_path, sim_run)


@pytest.mark.slow
def test_a_failed_aggregator_engine_is_one_line_and_every_request_is_accounted_for(tmp_path):
    """The aggregator's only engine fails to load: every query is left without an answer, so the run
    fails (exit 1, one line naming the engine and why); its files account for every request, the
    worker's traceback is in run.log. (Before: the run stopped at the failure, nothing written.)"""
    p = cli(*GRAPH, "backend=vllm", "models=paper", "backend.options.device=cpu", f"hydra.run.dir={tmp_path}",
            env=fake_vllm_env(FAKE_VLLM_FAIL="EXAONE"))
    assert p.returncode == 1 and p.stderr.count("\n") == 1, p.stderr
    assert p.stderr.startswith("error: all 8 queries were left without an answer (8 of 48 requests failed); "
                               "first error: every engine of Exaone failed (worker 1: worker 1 (Exaone) failed: "
                               "RuntimeError: fake engine refuses to start LGAI-EXAONE/"), p.stderr
    trace = rows(tmp_path, "trace.csv")
    assert len(trace) == 48 and {r["status"] for r in trace if r["agent"] == "agg"} == {"failed"}
    assert {r["status"] for r in trace if r["agent"] != "agg"} <= {"served", "cancelled"}
    assert all(q["answer"] == "" and q["correct"] == "False" for q in rows(tmp_path, "queries.csv"))
    sessions = {r["model"]: r for r in rows(tmp_path, "sessions.csv")}
    assert "fake engine refuses" in sessions["Exaone"]["error"] and sessions["Qwen"]["error"] == ""
    assert "graph_worker.py" in (tmp_path / "run.log").read_text()
    assert "Traceback" not in p.stdout   # the worker's traceback goes to run.log only
    assert json.loads((tmp_path / "error.json").read_text())["stage"] == "run"
    assert (tmp_path / "timeline.png").stat().st_size > 0   # its title had no latency to print


@pytest.mark.slow
def test_failed_agent_engines_leave_a_run_that_answers_from_the_rest(tmp_path):
    """Every agent's engine (Qwen) fails: the aggregator answers from the question alone, the run
    finishes with a warning (exit 0) and counts the failed requests."""
    p = cli(*GRAPH, "backend=vllm", "models=paper", "backend.options.device=cpu", f"hydra.run.dir={tmp_path}",
            env=fake_vllm_env(FAKE_VLLM_FAIL="Qwen"))
    assert p.returncode == 0, p.stderr
    assert "warning: 40 of 48 requests failed" in p.stderr and "FAILED (engines)" in p.stdout
    s = json.loads((tmp_path / "summary.json").read_text())
    assert (s["n_failed_requests"], s["n_served_requests"], s["n_unanswered_queries"]) == (40, 8, 0)
    assert s["invocations"]["Qwen"] == {"served": 0, "cancelled": 0, "failed": 40}
    assert s["first_request_error"].startswith("every engine of Qwen failed (worker 0: ")
    assert all(q["answer"] for q in rows(tmp_path, "queries.csv"))   # every query answered


@pytest.mark.slow
def test_an_engine_that_dies_mid_run_fails_only_what_comes_after(tmp_path):
    """The aggregator's engine process exits without a word at its third step: the two queries it
    answered keep their answers, the others are left without one; the run finishes (exit 0)."""
    graph = [a for a in GRAPH if not a.startswith("topology.overlap")]   # one step per aggregator request
    p = cli(*graph, "backend=vllm", "models=paper", "backend.options.device=cpu", f"hydra.run.dir={tmp_path}",
            env=fake_vllm_env(FAKE_VLLM_DIE="EXAONE:3"))
    assert p.returncode == 0, p.stderr
    s = json.loads((tmp_path / "summary.json").read_text())
    assert (s["n_unanswered_queries"], s["n_failed_requests"], s["invocations"]["Exaone"]["served"]) == (6, 6, 2)
    assert s["first_request_error"] == ("every engine of Exaone failed (worker 1: worker 1 (Exaone) exited with "
                                        "code 3 without reporting)")
    answered = [q for q in rows(tmp_path, "queries.csv") if q["answer"]]
    assert [q["query_id"] for q in answered] == ["mmlu_pro-00000", "mmlu_pro-00001"]
    # Latency is reported over the answered queries only.
    assert s["query_latency_s"]["mean"] == pytest.approx(sum(float(q["latency_s"]) for q in answered) / 2)


@pytest.mark.slow
def test_a_replica_that_dies_hands_its_requests_to_the_other(tmp_path):
    """Two Qwen engines, one of which dies at its fourth step: what it held is served by the other,
    nothing fails, nothing is served by the dead one after it died."""
    (tmp_path / "claim").mkdir()
    p = cli(*GRAPH, "backend=vllm", "models=paper", "backend.options.device=cpu", "cluster.n_workers=3",
            "topology.concurrency=4", f"hydra.run.dir={tmp_path / 'run'}",
            env=fake_vllm_env(FAKE_VLLM_DIE="Qwen:4", FAKE_VLLM_DIE_ONE=str(tmp_path / "claim")))
    assert p.returncode == 0 and "warning" not in p.stderr, p.stderr
    d = tmp_path / "run"
    sessions = {int(r["worker"]): r for r in rows(d, "sessions.csv")}
    dead = [w for w, r in sessions.items() if r["error"]]
    assert len(dead) == 1 and sessions[dead[0]]["model"] == "Qwen", sessions
    died_at = float(sessions[dead[0]]["run_end_s"])
    trace = rows(d, "trace.csv")
    assert len(trace) == 48 and {r["status"] for r in trace} <= {"served", "cancelled"}
    assert all(float(r["finish_s"]) <= died_at for r in trace if r["worker"] == str(dead[0]) and r["status"] == "served")
    other = next(w for w, r in sessions.items() if r["model"] == "Qwen" and w != dead[0])
    assert any(float(r["release_s"]) < died_at < float(r["finish_s"]) for r in trace if r["worker"] == str(other))
    s = json.loads((d / "summary.json").read_text())
    assert (s["n_failed_requests"], s["n_unanswered_queries"]) == (0, 0)


@pytest.mark.slow
def test_a_graph_run_past_its_timeout_fails_what_is_left_and_writes_its_files(tmp_path):
    """Every engine hangs: at backend.options.timeout_s each worker still running fails, and so
    does every request it held or would get. Before: RuntimeError, exit 1, no trace.csv."""
    from mosaic.backends.vllm.procgroup import pid_alive

    (tmp_path / "pids").mkdir()
    p = cli(*GRAPH, "backend=vllm", "models=paper", "backend.options.device=cpu", "backend.options.timeout_s=3",
            "backend.options.kill_grace_s=1", f"hydra.run.dir={tmp_path / 'run'}",
            env=fake_vllm_env(FAKE_VLLM_HANG_DIR=str(tmp_path / "pids")))
    assert p.returncode == 1 and p.stderr.count("\n") == 1, p.stderr
    assert "did not finish within backend.options.timeout_s=3 s" in p.stderr
    trace = rows(tmp_path / "run", "trace.csv")
    assert len(trace) == 48 and {r["status"] for r in trace} == {"failed"}
    assert all(r["error"] for r in rows(tmp_path / "run", "sessions.csv"))
    pids = [x for f in (tmp_path / "pids").glob("*.json") for x in json.loads(f.read_text()).values()]
    assert pids and not [x for x in pids if pid_alive(x)], "an engine outlived the run"


RAY = ("backend.options.launcher=ray", "backend.options.ray_address=local")


@pytest.mark.slow   # a private Ray starts (~10 s)
def test_graphs_on_ray_actors_account_for_every_request_and_a_dead_actor_is_its_workers_failure(tmp_path, sim_run):
    """backend.options.launcher=ray: the same graph on a Ray actor per worker serves what the local
    workers serve (before: refused, "run on this host's processes so far"); an actor whose process
    dies mid-run fails only what its engine had not finished."""
    pytest.importorskip("ray")
    p = cli(*GRAPH, "backend=vllm", "models=paper", "backend.options.device=cpu", *RAY,
            f"hydra.run.dir={tmp_path / 'ok'}", env=fake_vllm_env())
    assert p.returncode == 0, p.stderr
    check_against_the_simulator(tmp_path / "ok", sim_run)
    graph = [a for a in GRAPH if not a.startswith("topology.overlap")]   # one step per aggregator request
    p = cli(*graph, "backend=vllm", "models=paper", "backend.options.device=cpu", *RAY,
            f"hydra.run.dir={tmp_path / 'dies'}", env=fake_vllm_env(FAKE_VLLM_DIE="EXAONE:3"))
    assert p.returncode == 0, p.stderr
    s = json.loads((tmp_path / "dies" / "summary.json").read_text())
    assert (s["n_unanswered_queries"], s["n_failed_requests"], s["invocations"]["Exaone"]["served"]) == (6, 6, 2)
    assert s["first_request_error"].startswith("every engine of Exaone failed (worker 1: worker 1 (Exaone) died "
                                               "(its Ray actor): ")


# The fidelity suite's setting (mosaic/conf/fidelity.yaml): each engine kept on its worker's cores,
# simulated against the profile measured that way, workers independent.
ON_THIS_HOST = ("workload.profiles=tiny_cpu_confined", "cluster.workers_per_host=1")
CONFINED = "backend.options.cpu_confine=always"   # the real engines' side of it
LATENCY_BOUND = 0.10   # issue 16's fidelity bound on per-request latency percentiles
# How closely the host must run at its profile's speed, before (check_profile) and during the run
# (the engines' decode speed), for latency to be held to the bound: about this host's run-to-run noise.
# Measured here, the latency error grows faster than the engines' speed drifts (decode 1.08x: p50 -17%).
SPEED_TOLERANCE = 0.05
# The graph on real engines: reasoning agents (QwenR1: answers of hundreds of tokens, so a query's
# latency is mostly serving, as in the fidelity suite's graph_dense), 32 queries for stable
# percentiles. With 8 queries of short instruct answers (GRAPH) the simulator ran 5-10% short: the
# hand-off between coordinator and engines (~2-8 ms per layer) is a sizeable part of a 0.45 s query.
REAL_GRAPH = tuple({"workload.n_queries=8": "workload.n_queries=32", "topology.agents=[Qwen]": "topology.agents=[QwenR1]",
                    "topology.overlap_chunk=8": "topology.overlap_chunk=32"}.get(a, a) for a in GRAPH)


def profile_describes_this_host(models: str) -> tuple[bool, str]:
    """experiments/check_profile.py on the graph's models: exit 0 when the profile's own batches
    run within SPEED_TOLERANCE of its prediction here (1: they do not; the report says by how much)."""
    p = subprocess.run([sys.executable, str(ROOT / "experiments" / "check_profile.py"), f"model=[{models}]",
                        "profile=tiny_cpu_confined", CONFINED, f"tolerance={SPEED_TOLERANCE}"],
                       capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert p.returncode in (0, 1), p.stderr[-3000:]
    return p.returncode == 0, "\n".join(line for line in p.stdout.splitlines() if line.startswith("- "))


def with_queries(graph: tuple[str, ...], n: int) -> tuple[str, ...]:
    return tuple(f"workload.n_queries={n}" if a.startswith("workload.n_queries=") else a for a in graph)


def real_and_simulated(tmp_path: Path, name: str, graph: tuple[str, ...]) -> tuple[Path, Path]:
    """The graph on real tiny engines (confined as the profile was measured) and in the simulator."""
    real, sim = tmp_path / f"{name}_real", tmp_path / f"{name}_sim"
    p = cli(*graph, *ON_THIS_HOST, "backend=vllm", "models=tiny", "backend.options.device=cpu", CONFINED,
            f"hydra.run.dir={real}")
    assert p.returncode == 0, p.stderr[-3000:]
    p = cli(*graph, *ON_THIS_HOST, f"hydra.run.dir={sim}")
    assert p.returncode == 0, p.stderr
    return real, sim


def host_runs_at_its_profile(real: Path, sim: Path) -> tuple[bool, str]:
    """Whether latency can be held to the bound here: the engines' own decode time per token in
    `real` within SPEED_TOLERANCE of the simulated, and then the profile check. The host's speed
    drifts by more than the bound within minutes (a shared VM: 1.02x to 1.18x of the profile in
    one hour, and a run 19% slow right after a check at 1.06x), so both are asked."""
    from mosaic.analysis.graph_compare import compare_graph_runs

    speed = compare_graph_runs(sim, real)[1]["decode_ratio"]
    if abs(speed - 1) > SPEED_TOLERANCE:
        return False, f"decode time per token during the run {speed:.2f}x the simulated (check not run)"
    matches, check = profile_describes_this_host("QwenR1,Exaone")
    return matches, f"decode time per token during the run {speed:.2f}x the simulated; check_profile:\n{check}"


# The functional checks need few queries; the latency comparison needs REAL_GRAPH's for stable
# percentiles, and is made only where a first, short run shows the host at its profile's speed (on
# one it does not describe, the long run decided nothing and took most of the real-engine tests' time).
PROBE_QUERIES = 8


@pytest.mark.vllm
@pytest.mark.slow
@pytest.mark.timed
def test_graphs_on_real_tiny_engines(tmp_path):
    """The 3-2-1 graph with overlap and early exit on real engines: every request served or
    cancelled as in the simulator, vLLM reports prefix-cache hits, and, where the profile describes
    this host, per-query latency p50 and p90 within the fidelity bound of the simulated run of the
    same graph."""
    pytest.importorskip("vllm")
    real, sim = real_and_simulated(tmp_path, "probe", with_queries(REAL_GRAPH, PROBE_QUERIES))
    check_against_the_simulator(real, sim, n_queries=PROBE_QUERIES)
    s = json.loads((real / "summary.json").read_text())
    assert s["prefill_requests"] > 0 and s["prefix_cache_hit_tokens"] > 0   # vLLM's own count of cached tokens
    matches, why = host_runs_at_its_profile(real, sim)
    if not matches:
        pytest.skip(f"tiny_cpu_confined does not describe this host ({why}), so per-query latency is not held "
                    "to the bound")
    real, sim = real_and_simulated(tmp_path, "latency", REAL_GRAPH)
    check_against_the_simulator(real, sim, n_queries=32)
    latency = {d: json.loads((d / "summary.json").read_text())["query_latency_s"] for d in (sim, real)}
    errs = {q: latency[sim][q] / latency[real][q] - 1 for q in ("p50", "p90")}
    said = ", ".join(f"{q} simulated {latency[sim][q]:.3f} s, real {latency[real][q]:.3f} s ({e:+.1%})"
                     for q, e in errs.items())
    from mosaic.analysis.graph_compare import compare_graph_runs

    speed = compare_graph_runs(sim, real)[1]["decode_ratio"]
    if abs(speed - 1) > SPEED_TOLERANCE:   # the host drifted between the two runs
        pytest.skip(f"decode time per token during the latency run {speed:.2f}x the simulated ({said})")
    assert all(abs(e) <= LATENCY_BOUND for e in errs.values()), f"per-query latency: {said}; {why}"


@pytest.mark.slow
def test_natural_graphs_answer_from_the_engines_texts(tmp_path):
    # The fake engine writes "so the answer is (A)" with every token at probability 0.9.
    natural = [a for a in GRAPH if not a.startswith("topology.overlap")]
    p = cli(*natural, "backend=vllm", "models=paper", "backend.options.device=cpu", "backend.options.replay=false",
            f"hydra.run.dir={tmp_path}", env=fake_vllm_env())
    assert p.returncode == 0, p.stderr
    reqs = rows(tmp_path, "trace.csv")
    served = [r for r in reqs if r["status"] == "served"]
    assert len(reqs) == 48 and all(r["answer"] == "A" for r in served)
    assert all(float(r["confidence"]) == pytest.approx(0.9, abs=1e-4) for r in served)
    # Two agreeing layer-1 answers end every layer-1 cluster (agreement): the third is cancelled.
    assert sum(r["status"] == "cancelled" for r in reqs) >= 8
    assert all(q["answer"] == "A" for q in rows(tmp_path, "queries.csv"))


@pytest.mark.slow
def test_overlap_needs_replay_on_vllm(tmp_path):
    p = cli(*GRAPH, "backend=vllm", "models=paper", "backend.options.device=cpu", "backend.options.replay=false",
            f"hydra.run.dir={tmp_path}", env=fake_vllm_env())
    assert p.returncode == 2 and "needs backend.options.replay=true" in p.stderr


@pytest.mark.slow
def test_a_crashed_worker_is_failed_while_the_others_keep_the_queue_busy():
    """Worker 0's process crashed; worker 1 streams without a pause. Before: a dead worker was seen
    only when the queue had been empty for a poll, so its requests waited for a quiet moment."""
    import time
    from types import SimpleNamespace

    from mosaic.backends.vllm.graph_pool import SETTLE_S, VllmGraphPool
    from mosaic.backends.vllm.launcher import LocalProcessLauncher

    class Busy:
        def __init__(self):
            self.script = [{"worker": 1, "ready": True, "load_start_s": 0.0, "load_end_s": 0.1}]

        def get(self, timeout):
            time.sleep(0.005)
            return self.script.pop(0) if self.script else {"worker": 1, "stream": ["q/L1.0", 1]}

    class Workers:
        def open(self, specs):
            self.out = Busy()
            return self.out

        def inbox(self):
            return None

        def start(self, spec, inbox):
            pass

        def gone(self, crashed_only=False):
            return {0: "exited with code -9 without reporting"}

        def close(self, clean):
            pass

    vllm = SimpleNamespace(launcher=LocalProcessLauncher(), replay=True, cluster=SimpleNamespace(n=2), device="cpu",
                           kv_cache_gib=1, cpu_confine="start", timeout_s=30.0, registry=SimpleNamespace(resolve=lambda m: ("p", {}),
                                                                                     max_model_len=1000),
                           profiles=SimpleNamespace(engine=SimpleNamespace(num_gpu_blocks=None)))
    pool = VllmGraphPool(vllm, None, {0: "Qwen", 1: "Qwen"}, poll_s=0.05)
    pool.workers = workers = Workers()
    seen, t0 = [], time.monotonic()

    def on_failed(t, w, why):
        seen.append((w, why, time.monotonic() - t0))
        workers.out.script.append({"worker": 1, "done": True, "session": {
            "model": "Qwen", "load_start_s": 0.0, "load_end_s": 0.1, "run_end_s": 1.0, "n_requests": 0,
            "preemptions": 0}})

    sessions, _ = pool.run(lambda t: None, lambda t, f: None, lambda t, rid, n: None, on_failed)
    assert [(w, why) for w, why, _ in seen] == [(0, "worker 0 (Qwen) exited with code -9 without reporting")]
    assert SETTLE_S <= seen[0][2] < SETTLE_S + 2.0
    assert sorted((s.worker, s.error is not None) for s in sessions) == [(0, True), (1, False)]


@pytest.mark.slow
def test_an_online_moa_run_on_the_vllm_pool_starts_each_query_at_its_arrival(tmp_path):
    """The pool's clock calls the coordinator at each arrival (VllmGraphPool.at) while it serves."""
    ov = ("workload=smoke", "workload.n_queries=6", "cluster=cpu2", "cluster.n_workers=5", "cluster.workers_per_host=1",
          "arrivals=poisson", "arrivals.rate=2", "runtime=pull")
    p = cli(*ov, "backend=vllm", "models=paper", "backend.options.device=cpu", f"hydra.run.dir={tmp_path}",
            env=fake_vllm_env())
    assert p.returncode == 0, p.stderr
    s = json.loads((tmp_path / "summary.json").read_text())
    queries, trace = rows(tmp_path, "queries.csv"), rows(tmp_path, "trace.csv")
    assert s["online"]["answered"] == 6 == len(queries) and s["runtime"] == "pull"
    starts = [float(q["start_s"]) for q in queries]
    assert starts == sorted(starts) and starts[-1] - starts[0] > 0.3   # spread as the arrivals were, not at once
    for r in trace:
        if r["status"] == "served":   # no request goes out before its query arrived
            q = next(q for q in queries if q["query_id"] == r["query_id"])
            assert float(r["release_s"]) >= float(q["start_s"]) - 1e-6


@pytest.mark.slow
@pytest.mark.vllm
@pytest.mark.timed
def test_online_graphs_on_real_tiny_engines_match_the_simulated_latency(tmp_path):
    """The same Poisson arrivals on real engines and in the simulator: every query starts at its
    arrival on both, and query latency p50 and p90 (arrival to answer) are within the fidelity bound
    where the profile describes this host (as test_graphs_on_real_tiny_engines decides it)."""
    pytest.importorskip("vllm")
    # light load (a query every ~10 s, each taking a few seconds alone): a host a little slower than
    # its profile must not tip the real run into queueing the simulated one does not see
    online = ("arrivals=poisson", "arrivals.rate=0.1", "runtime=least_outstanding")

    def arrivals_on_time(real, sim, n):
        check_against_the_simulator(real, sim, n_queries=n)
        arrivals = {d: [float(q["start_s"]) - float(json.loads((d / "summary.json").read_text())["ready_s"])
                        for q in rows(d, "queries.csv")] for d in (sim, real)}
        assert arrivals[real] == pytest.approx(arrivals[sim], abs=0.25)   # the same arrivals, each on time

    real, sim = real_and_simulated(tmp_path, "probe", (*with_queries(REAL_GRAPH, PROBE_QUERIES // 2), *online))
    arrivals_on_time(real, sim, PROBE_QUERIES // 2)
    matches, why = host_runs_at_its_profile(real, sim)
    if not matches:
        pytest.skip(f"tiny_cpu_confined does not describe this host ({why}), so query latency is not held to "
                    "the bound")
    real, sim = real_and_simulated(tmp_path, "latency", (*with_queries(REAL_GRAPH, 12), *online))
    arrivals_on_time(real, sim, 12)
    lat = {d: json.loads((d / "summary.json").read_text())["online"]["query_e2e_s"] for d in (sim, real)}
    errs = {q: lat[sim][q] / lat[real][q] - 1 for q in ("p50", "p90", "p99")}
    said = ", ".join(f"{q} simulated {lat[sim][q]:.3f} s, real {lat[real][q]:.3f} s ({e:+.1%})" for q, e in errs.items())
    from mosaic.analysis.graph_compare import compare_graph_runs

    speed = compare_graph_runs(sim, real)[1]["decode_ratio"]
    if abs(speed - 1) > SPEED_TOLERANCE:   # the host drifted between the two runs
        pytest.skip(f"decode time per token during the latency run {speed:.2f}x the simulated ({said})")
    assert all(abs(errs[q]) <= LATENCY_BOUND for q in ("p50", "p90")), f"query latency: {said}; {why}"
