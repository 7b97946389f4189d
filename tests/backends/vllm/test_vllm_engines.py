"""Real vLLM engines (tiny models, CPU). Skipped where vLLM is not installed; CI installs it."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytest.importorskip("vllm")

from mosaic.cluster import Cluster  # noqa: E402
from mosaic.plan import Plan, Session, WorkerPlan  # noqa: E402
from mosaic.profiles import load_profiles  # noqa: E402
from mosaic.workload.types import Outcome, Request  # noqa: E402
from mosaic.backends.vllm.backend import VllmBackend  # noqa: E402

pytestmark = [pytest.mark.vllm, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[3]
TINY = yaml.safe_load((ROOT / "mosaic" / "conf" / "models" / "tiny.yaml").read_text())


def make(layout, n=6):
    """layout: worker -> [model]; n requests per session with growing prompts and outputs."""
    reqs, replay, workers = {}, {}, []
    for w, models in layout.items():
        sessions = []
        for m in models:
            ids = []
            for i in range(n):
                rid = f"q{i}/{m}"
                reqs[rid] = Request(rid, f"q{i}", m, 16 + 5 * i, "expert")
                replay[rid] = Outcome(8 + 6 * i, "ABCD"[i % 4])
                ids.append(rid)
            sessions.append(Session(m, tuple(ids)))
        workers.append(WorkerPlan(w, tuple(sessions)))
    return Plan("expert", "manual", tuple(workers)), reqs, replay


def backend(models=TINY):
    return VllmBackend(Cluster.uniform(2, 80.0), load_profiles("tiny_cpu"), models=models, device="cpu")


def test_two_workers_three_models_every_request_completes():
    plan, reqs, replay = make({0: ["Qwen", "GLM"], 1: ["Exaone"]})
    trace = backend().run(plan, reqs, replay)
    assert sorted(r.request_id for r in trace.requests) == sorted(reqs)
    for r in trace.requests:
        assert r.error is None
        assert r.output_tokens == replay[r.request_id].output_tokens
        assert r.answer == replay[r.request_id].answer
        assert 0 <= r.start_s <= r.first_token_s <= r.finish_s <= trace.makespan_s
    for w in (0, 1):
        mine = sorted((s for s in trace.sessions if s.worker == w), key=lambda s: s.index)
        assert [s.model for s in mine] == [s.model for s in plan.workers[w].sessions]
        for s in mine:
            assert s.error is None and s.load_start_s < s.load_end_s <= s.run_start_s <= s.run_end_s
        for a, b in zip(mine, mine[1:]):
            assert a.run_end_s <= b.load_start_s
    for ws in trace.workers:
        assert ws.busy_s + ws.idle_s == pytest.approx(trace.makespan_s)


def test_engine_that_fails_to_start_is_reported_and_others_complete(tmp_path):
    broken = json.loads(json.dumps(TINY))
    # a folder that is there but holds no model (a missing path is refused before any engine starts)
    broken["models"]["GLM"] = {"path": str(tmp_path), "engine": {"load_format": "dummy"}}
    plan, reqs, replay = make({0: ["GLM", "Qwen"], 1: ["Exaone"]}, n=3)
    trace = backend(broken).run(plan, reqs, replay)
    assert len(trace.requests) == len(reqs)  # every request in, one result out
    failed = [r for r in trace.requests if r.error]
    assert {r.model for r in failed} == {"GLM"} and len(failed) == 3
    assert "engine for model GLM" in failed[0].error and "session 0" in failed[0].error
    glm = next(s for s in trace.sessions if s.model == "GLM")
    assert glm.error and "failed to start" in glm.error
    ok = [r for r in trace.requests if not r.error]
    assert {r.model for r in ok} == {"Qwen", "Exaone"}
    assert all(r.output_tokens == replay[r.request_id].output_tokens for r in ok)


def test_natural_generation_feeds_expert_texts_to_the_aggregator():
    from mosaic.config.schema import AggregationConfig
    from mosaic.run.pipeline import aggregator_requests, run_pipeline
    from mosaic.config.schema import SchedulerConfig
    from mosaic.workload.types import Query, Workload

    queries = tuple(Query(f"q{i}", "all", 40, "A", ("Qwen", "GLM"), 0.0,
                          f"Question {i}: which? The options are: (A) yes (B) no") for i in range(3))
    wl = Workload("natural", 0, queries, ("Qwen", "GLM"), "Exaone")
    cluster, profiles = Cluster.uniform(2, 80.0), load_profiles("tiny_cpu")
    be = VllmBackend(cluster, profiles, models=TINY, device="cpu", replay=False, max_tokens=24)
    res = run_pipeline(wl, cluster, profiles, SchedulerConfig(name="round_robin"), be, AggregationConfig(policy="always", tau=None))
    for r in res.expert.trace.requests:
        assert r.error is None and isinstance(r.text, str) and 1 <= r.output_tokens <= 24
    prompts = {r.query_id: r.prompt for r in aggregator_requests(wl, res.expert.trace, {q.id for q in queries}, 4096)[0]}
    for r in res.expert.trace.requests:
        assert r.text in prompts[r.query_id]
    assert len(res.aggregator.trace.requests) == 3
    assert all(r.error is None and isinstance(r.text, str) for r in res.aggregator.trace.requests)


def test_ray_launcher_serves_the_plan_as_the_simulator_accounts_for_it(tmp_path):
    """backend.options.launcher=ray (an actor per worker on a private local Ray) on the smoke
    workload: the same plan as the simulator's, every request served, each on the worker and session
    the simulator puts it, with the same replayed output. Only the timings differ. (The local
    launcher serves the same command in tests/run/test_calibration.py.)"""
    pytest.importorskip("ray")
    # two workers: a worker serves models in a row and the aggregator runs as one TP-2 engine
    common = ["models=tiny", "workload=smoke", "workload.n_queries=4", "cluster=cpu2"]
    rows = {}
    for name, extra in (("ray", ["backend=vllm", "backend.options.launcher=ray", "backend.options.ray_address=local"]),
                        ("sim", [])):
        out = tmp_path / name
        p = subprocess.run([sys.executable, "experiments/run.py", *common, *extra, f"hydra.run.dir={out}"],
                           cwd=ROOT, capture_output=True, text=True, timeout=1200)
        assert p.returncode == 0, p.stderr[-3000:]
        s = json.loads((out / "summary.json").read_text())
        assert s["n_failed_requests"] == 0 and s["backend"] == ("vllm" if name == "ray" else "sim")
        with open(out / "trace.csv") as f:
            rows[name] = sorted((r["stage"], r["request_id"], r["worker"], r["session"], r["output_tokens"],
                                 r["answer"], r["error"]) for r in csv.DictReader(f))
    plans = [json.loads((tmp_path / d / "plan.json").read_text()) for d in ("ray", "sim")]
    assert [{st: p[st]["workers"] for st in p} for p in plans][0] == [{st: p[st]["workers"] for st in p}
                                                                      for p in plans][1]
    assert rows["ray"] == rows["sim"] and len(rows["ray"]) >= 12
    sessions = plans[0]["aggregator"]["workers"]
    assert sessions and all(s["workers"] == [0, 1] for w in sessions for s in w["sessions"]), sessions


def test_recorded_traces_feed_a_trace_workload(tmp_path):
    """`mosaic record` on tiny models, then the recorded files as a trace workload's experts and
    aggregator (format mosaic_json), run on the simulator: every question joins, every request runs."""
    from mosaic.run.app import run
    from mosaic.run.record import main as record_main
    from tests.helpers import config

    qs = [{"question": f"Which letter is number {i}? The options are: (A) one (B) two (C) three (D) four",
           "gold_answer": "ABCD"[i % 4], "category": "count"} for i in range(6)]
    (tmp_path / "q").mkdir()
    (tmp_path / "q" / "Q_test.json").write_text(json.dumps(qs))
    assert record_main(["--questions", str(tmp_path / "q" / "Q_test.json"), "--experts", "Qwen,GLM,Exaone",
                        "--out", str(tmp_path / "t"), "--max-tokens", "12", "--device", "cpu"]) == 0
    for name in ("Qwen", "GLM", "Exaone"):
        rows = json.loads((tmp_path / "t" / f"{name}.json").read_text())
        assert len(rows) == 6 and all(r["error"] is None and 1 <= r["output_tokens"] <= 12 for r in rows)
        assert all(isinstance(r["text"], str) for r in rows)
    cfg = config("workload=trace_mmlu_pro", "workload.profiles=tiny_cpu", "cluster=cpu2", "models=tiny",
                 f"workload.questions_dir={tmp_path / 'q'}", f"workload.traces_dir={tmp_path / 't'}",
                 "workload.questions=Q_test.json", "workload.calibration_questions=null",
                 "workload.calibration_size=2", "workload.k=2", "workload.dataset=count")
    cfg.workload.experts = {e: {"file": f"{e}.json", "format": "mosaic_json", "profile": e, "lengths": "trace"}
                            for e in ("Qwen", "GLM")}
    cfg.workload.aggregator = {"file": "Exaone.json", "format": "mosaic_json", "profile": "Exaone"}
    out = run(cfg)
    s = out.summary
    assert s["n_queries"] == 4 and s["n_expert_requests"] == 8 and s["n_failed_requests"] == 0
