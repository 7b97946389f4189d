"""A run as a Perfetto trace: one process per worker, loads and sessions as slices, requests as
async slices, the aggregator stage after the expert stage; the same from memory and from the folder."""
import json

import pytest

from mosaic.run.app import run, write_outputs
from mosaic.run.builder import compose
from mosaic.run.perfetto import PERFETTO_FILE, from_run_dir, main


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    out = run(compose(["workload.n_queries=30", "cluster.n_workers=2"]))
    write_outputs(out, d)
    return d, out


def test_every_session_load_and_request_is_on_its_workers_track(run_dir):
    d, out = run_dir
    doc = json.loads((d / PERFETTO_FILE).read_text())
    ev = doc["traceEvents"]
    names = {e["pid"]: e["args"]["name"] for e in ev if e["ph"] == "M" and e["name"] == "process_name"}
    assert names == {0: "worker 0", 1: "worker 1"}
    expert_s = out.result.expert.trace.makespan_s
    sessions = [e for e in ev if e.get("cat") == "session"]
    traces = (out.result.expert.trace, out.result.aggregator.trace)
    assert len(sessions) == sum(len(t.sessions) for t in traces)
    for t in traces:
        shift = expert_s if t.stage == "aggregator" else 0.0
        for s in t.sessions:
            match = [e for e in sessions if e["pid"] == s.worker and e["name"] == f"{s.model} ({t.stage})"
                     and e["ts"] == pytest.approx((shift + s.run_start_s) * 1e6)]
            assert len(match) == 1 and match[0]["dur"] == pytest.approx((s.run_end_s - s.run_start_s) * 1e6)
    # Every request: one begin and one end on its worker, the end after the begin, inside the run.
    begins = {e["id"]: e for e in ev if e["ph"] == "b"}
    ends = {e["id"]: e for e in ev if e["ph"] == "e"}
    ids = {r.request_id for t in traces for r in t.requests}
    assert set(begins) == set(ends) == ids
    total = (expert_s + out.result.aggregator.trace.makespan_s) * 1e6
    for rid, b in begins.items():
        assert b["pid"] == ends[rid]["pid"] and b["ts"] <= ends[rid]["ts"] <= total * (1 + 1e-9)
    agg = [b for b in begins.values() if "aggregator" in b["cat"]]
    assert all(b["ts"] >= expert_s * 1e6 * (1 - 1e-9) for b in agg)


def test_the_folder_gives_the_same_trace_and_a_bad_folder_is_one_line(run_dir, tmp_path, capsys):
    d, _ = run_dir
    assert from_run_dir(d) == json.loads((d / PERFETTO_FILE).read_text())
    assert main([str(tmp_path)]) == 2
    assert "not a finished run folder: no trace.csv, sessions.csv, summary.json" in capsys.readouterr().err


def test_a_graph_run_folder_gives_the_trace_the_run_wrote(tmp_path, capsys):
    from mosaic.__main__ import main as mosaic_main

    write_outputs(run(compose(["topology=tree", "workload=synth_small", "workload.n_queries=3"])), tmp_path)
    assert from_run_dir(tmp_path) == json.loads((tmp_path / PERFETTO_FILE).read_text())
    # and `mosaic runs` shows a graph run's makespan, not stage columns it does not have
    assert mosaic_main(["runs", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "makespan_s" in out and "expert_stage_s" not in out


def test_a_summary_that_is_not_an_object_is_one_line(run_dir, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(run_dir[0], bad)
    (bad / "summary.json").write_text("[1, 2, 3]\n")
    with pytest.raises(ValueError, match=r"summary\.json: not a summary .*a JSON list, not an object"):
        from_run_dir(bad)


def test_each_worker_has_running_and_queued_counters_that_add_up(run_dir):
    d, out = run_dir
    ev = json.loads((d / PERFETTO_FILE).read_text())["traceEvents"]
    traces = (out.result.expert.trace, out.result.aggregator.trace)
    for w in (0, 1):
        for track, key in (("requests running", "running"), ("requests queued", "queued")):
            series = [(e["ts"], e["args"][key]) for e in ev if e["ph"] == "C" and e["pid"] == w and e["name"] == track]
            assert series and series == sorted(series, key=lambda x: x[0])
            assert min(v for _, v in series) >= 0 and series[-1][1] == 0
        running = [(e["ts"], e["args"]["running"]) for e in ev if e["ph"] == "C" and e["pid"] == w
                   and e["name"] == "requests running"]
        # at a request's midpoint, at least it is running on its worker
        expert = traces[0]
        for r in [r for r in expert.requests if r.worker == w][:20]:
            mid = (r.start_s + r.finish_s) / 2 * 1e6
            before = [v for ts, v in running if ts <= mid]
            assert before and before[-1] >= 1
        assert max(v for _, v in running) <= 256        # the engine's max_num_seqs
    threads = {e["pid"]: e["args"]["name"] for e in ev if e["ph"] == "M" and e["name"] == "thread_name"}
    assert threads == {0: "engine", 1: "engine"}
