"""Online runs: queries that arrive over time, served by engines that stay loaded, routed by the
runtime; every query and request accounted for, SLO metrics that agree with the trace."""
import numpy as np
import pytest

from mosaic.core.errors import ConfigError
from mosaic.graphs.coordinator import ADMISSION, SKIPPED
from mosaic.graphs.shape import ROOT
from mosaic.run.app import run
from mosaic.run.builder import build_run, compose
from mosaic.run.online import unloaded_latency
from mosaic.workload.arrivals import arrival_times

SMALL = ["workload=synth_small", "workload.n_queries=16", "cluster.n_workers=6"]


def online(*extra):
    ov = [*SMALL, "arrivals=poisson", "arrivals.rate=0.5", *extra]
    return ov, run(compose(ov))


@pytest.mark.parametrize("runtime", ["static", "least_outstanding", "p2c", "pull"])
def test_every_query_arrives_on_time_and_every_request_has_one_row(runtime):
    ov, out = online(f"runtime={runtime}")
    trace, placement, _ = out.graph
    s = out.summary
    r = build_run(compose(ov))
    shapes = r.graph.shapes
    assert len(trace.requests) == sum(len(shapes[q.id]) for q in r.workload.queries)
    assert len({x.request_id for x in trace.requests}) == len(trace.requests)
    assert [q.query_id for q in trace.queries] == [q.id for q in r.workload.queries]
    arrivals = arrival_times(r.config.arrivals, 16, 0)
    assert [q.start_s for q in trace.queries] == pytest.approx((trace.ready_s + arrivals).tolist())
    for x in trace.requests:   # a request goes out when its query arrives (experts) or its experts finish
        if x.status == "served":
            assert x.release_s >= trace.queries[int(0)].start_s - 1e-9 and x.start_s >= x.release_s - 1e-9
            assert placement[x.worker] == x.model
    o = s["online"]
    assert o["queries"] == 16 and o["answered"] == 16 and o["rejected"] == 0
    assert o["query_e2e_s"]["p50"] == pytest.approx(np.median([q.latency_s for q in trace.queries]))
    assert s["runtime"] == runtime and s["arrivals"]["kind"] == "poisson"


def test_at_a_trickle_each_query_takes_its_unloaded_latency():
    # one query every ~1000 s: nothing queues, so each answer comes when its requests alone take
    ov, out = online("arrivals.rate=0.001", "workload.n_queries=6")
    trace = out.graph[0]
    r = build_run(compose(ov))
    profiles = r.profiles
    for q in trace.queries:
        served = {x.agent: x for x in trace.requests if x.query_id == q.query_id and x.status == "served"}
        alone = unloaded_latency(r.graph.shapes[q.query_id], served, profiles)
        assert q.latency_s == pytest.approx(alone, rel=0.05)
    assert out.summary["online"]["slo_attainment"] == 1.0


def test_the_aggregator_is_skipped_for_the_queries_the_offline_pipeline_skips():
    _, out = online()
    trace = out.graph[0]
    offline = run(compose(SMALL)).result
    skipped = {x.query_id for x in trace.requests if x.agent == ROOT and x.cancelled_by == SKIPPED}
    assert skipped == {d.query_id for d in offline.decisions if d.skip}
    assert {q.query_id: q.answer for q in trace.queries} == offline.final_answers
    assert out.summary["skip_rate"] == pytest.approx(len(skipped) / 16)
    # every request runs as long as offline: the same prompts (the aggregator's cut to half the
    # context alike) and the same output lengths
    offline_rows = {r.request_id: r for st in (offline.expert, offline.aggregator) for r in st.trace.requests}
    for x in trace.requests:
        if x.status == "served":
            rid = x.request_id.replace("@", "#")
            assert (x.prompt_tokens, x.output_tokens) == (offline_rows[rid].prompt_tokens,
                                                          offline_rows[rid].output_tokens), rid


def test_an_admission_limit_rejects_with_a_count_and_loses_nothing():
    _, out = online("arrivals.rate=50", "arrivals.max_in_system=2")
    trace, s = out.graph[0], out.summary
    rejected = [q for q in trace.queries if q.rejected]
    assert s["online"]["rejected"] == len(rejected) > 0 and len(trace.queries) == 16
    for q in rejected:
        rows = [x for x in trace.requests if x.query_id == q.query_id]
        assert rows and all(x.status == "cancelled" and x.cancelled_by == ADMISSION and x.worker is None for x in rows)
    assert s["online"]["slo_attainment"] <= 1 - len(rejected) / 16


def test_pull_holds_no_engine_past_its_slots():
    from mosaic.backends import make_graph_pool
    from mosaic.graphs.coordinator import GraphCoordinator
    from mosaic.run.graph_app import MoaOutcomes

    r = build_run(compose([*SMALL, "arrivals=poisson", "arrivals.rate=5"]))
    g = r.graph
    moa = MoaOutcomes(r.workload, r.config.aggregation)
    c = GraphCoordinator(r.workload.queries, (), g.placement, moa.outcome, lambda o, rng: False, "none", 1, 0,
                         arrivals=arrival_times(r.config.arrivals, 16, 0), router="pull", slots=2,
                         shape_of=lambda q: g.shapes[q.id], gate=moa.gate)
    trace = c.run(make_graph_pool("sim", r.backend, r.profiles, g.placement))
    assert len(trace.queries) == 16
    waited = 0
    for w in g.placement:
        spans = [(x.start_s, x.finish_s) for x in trace.requests if x.worker == w and x.status == "served"]
        for t, _ in spans:
            assert sum(a <= t < b for a, b in spans) <= 2
        waited += sum(x.start_s - x.release_s > 1.0 for x in trace.requests if x.worker == w and x.status == "served")
    assert waited > 0   # at 5 queries/s some requests did wait in their model's queue


def test_same_seed_same_online_run_and_another_seed_another():
    a, b = online()[1].graph[0], online()[1].graph[0]
    assert a == b
    assert online("seed=1")[1].graph[0] != a


def test_cold_engines_make_the_first_queries_wait_for_the_loads():
    _, out = online("arrivals.engines=cold")
    trace = out.graph[0]
    first = trace.queries[0]
    assert first.start_s == 0.0 and trace.ready_s > 0
    assert first.latency_s >= trace.ready_s


def test_agent_graphs_take_arrivals_too():
    _, out = online("topology=tree", "runtime=p2c")
    trace = out.graph[0]
    assert len(trace.queries) == 16 and out.summary["online"]["answered"] == 16
    assert len(trace.requests) == 16 * 13
    starts = [q.start_s for q in trace.queries]
    assert starts == sorted(starts) and starts[-1] - starts[0] > 10   # spread over ~30 s, not all at once


@pytest.mark.parametrize("overrides,needle", [
    (["cluster.n_workers=3"], "loaded on a worker of its own"),
    (["topology=tree", "topology.concurrency=4"], "topology.concurrency=4 keeps that many"),
    (["runtime=pull", "topology=tree", "topology.overlap=incremental"], "runtime=pull binds"),
])
def test_online_settings_that_cannot_run_are_refused(overrides, needle):
    with pytest.raises(ConfigError, match=needle):
        build_run(compose([*SMALL, "arrivals=poisson", "arrivals.rate=1", *overrides]))


def test_every_model_gets_a_worker_whatever_the_scheduler_places():
    r = build_run(compose([*SMALL, "arrivals=poisson", "arrivals.rate=1", "scheduler=data_parallel"]))
    models = {a.model for sh in r.graph.shapes.values() for a in sh}
    assert set(r.graph.placement.values()) == models and len(r.graph.placement) == 6


def test_offline_agent_graphs_still_refuse_a_runtime():
    with pytest.raises(ConfigError, match="offline agent graphs"):
        build_run(compose([*SMALL, "topology=tree", "runtime=pull"]))


def test_the_capacity_search_brackets_and_bisects_a_threshold():
    from mosaic.analysis.capacity import search

    best, tried, unsaturated = search(lambda r: 1.0 if r <= 3.3 else 0.5, 0.1, 0.99, 0.02)
    assert 3.3 / 1.02 <= best <= 3.3 and not unsaturated
    assert tried[:6] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 3.2])
    best, _, _ = search(lambda r: 1.0 if r <= 0.01 else 0.0, 0.1, 0.99, 0.05)   # below the start: halves
    assert 0.01 / 1.05 <= best <= 0.01
    assert search(lambda r: 0.0, 0.1, 0.99, 0.05)[0] is None
    best, tried, unsaturated = search(lambda r: 1.0, 0.1, 0.99, 0.05, burst=lambda r: r >= 0.8)
    assert unsaturated and best == 0.8 and len(tried) == 4


@pytest.mark.slow
def test_mosaic_capacity_writes_its_table_runs_and_figure(tmp_path):
    import csv
    from mosaic.analysis.capacity import main

    assert main(["workload=synth_small", "workload.n_queries=40", "cluster.n_workers=6", "slo.multiple=1.5", "engine.num_gpu_blocks=2100",
                 "--policies", "engine_aware/least_outstanding", "--seeds", "0", "--start", "0.05",
                 "--tolerance", "0.3", "--out", str(tmp_path)]) == 0
    rows = list(csv.DictReader(open(tmp_path / "capacity.csv")))
    md = (tmp_path / "capacity.md").read_text()
    assert rows and (tmp_path / "capacity.png").stat().st_size > 0
    assert "engine_aware/least_outstanding" in md and "mosaic capacity" in md
    passing = [float(r["rate"]) for r in rows if float(r["slo_attainment"]) >= 0.99]
    failing = [float(r["rate"]) for r in rows if float(r["slo_attainment"]) < 0.99]
    assert passing and failing and max(passing) < min(failing)   # attainment fell with rate, and was found


def test_an_online_run_folder_prints_writes_and_tabulates_its_slo_metrics(tmp_path, capsys):
    import json
    from mosaic.__main__ import main
    from mosaic.cli.job import run_job

    ov = ["workload=synth_small", "workload.n_queries=8", "cluster.n_workers=6", "arrivals=gamma", "arrivals.rate=0.2",
          "slo.latency_s=300"]
    assert run_job(compose(ov), tmp_path / "a", ov) == 0
    printed = capsys.readouterr().out
    assert "SLO attainment" in printed and "within 300 s" in printed and "gamma, 0.2 queries/s, cv 4" in printed
    s = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert s["online"]["slo"] == {"latency_s": 300.0, "multiple": None} and s["arrivals"]["cv"] == 4.0
    assert (tmp_path / "a" / "timeline.png").stat().st_size > 0
    assert main(["runs", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    assert "online.slo_attainment" in table and "online.query_e2e_s.p99" in table
    assert f"{s['online']['slo_attainment']:g}"[:4] in table


def test_slo_settings_of_an_offline_run_are_reported_not_applied():
    s = run(compose(["workload=synth_small", "workload.n_queries=8", "slo.multiple=3"])).summary
    assert "slo.multiple" in s["settings_not_applied"]


def _placed_even(*extra):
    ov = ["workload=synth_small", "workload.n_queries=100", "cluster.n_workers=8", "topology=tree",
          "topology.placement=even", "arrivals=poisson", "arrivals.rate=0.3", "runtime=least_outstanding", *extra]
    return run(compose(ov))


def test_replanning_moves_replicas_to_the_backlogged_model_and_cuts_the_tail():
    fixed, moving = _placed_even(), _placed_even("runtime.replan=true")
    t = moving.graph[0]
    moves = moving.summary["replicas_moved"]
    assert moves and all(m["target"] == "LlamaR1" for m in moves)   # the reasoning model the even split starves
    assert moving.summary["online"]["query_e2e_s"]["p99"] < 0.8 * fixed.summary["online"]["query_e2e_s"]["p99"]
    # one engine per worker at any instant, and every request served by an engine of its model
    for w in {s.worker for s in t.sessions}:
        mine = sorted((s for s in t.sessions if s.worker == w), key=lambda s: s.index)
        assert all(a.run_end_s <= b.load_start_s + 1e-9 for a, b in zip(mine, mine[1:]))
    for x in t.requests:
        if x.status == "served":
            s = [s for s in t.sessions if s.worker == x.worker and s.run_start_s <= x.start_s <= s.run_end_s]
            assert s and s[0].model == x.model
    # hysteresis: a move starts no sooner than one load after the last one was ready
    for a, b in zip(moves, moves[1:]):
        assert b["drain_s"] >= a["ready_s"] + 44.0
    assert len(t.queries) == 100 and moving.summary["online"]["answered"] == 100


def test_replanning_leaves_a_balanced_placement_alone():
    out = run(compose([*SMALL, "arrivals=poisson", "arrivals.rate=0.05", "runtime.replan=true"]))
    assert out.summary["replicas_moved"] == []


def test_replanning_settings_are_refused_or_reported_where_they_do_nothing():
    with pytest.raises(ConfigError, match="runtime.replan moves replicas"):
        build_run(compose([*SMALL, "arrivals=poisson", "arrivals.rate=1", "runtime.replan=true", "backend=vllm",
                           "models=tiny"]))
    s = run(compose(["workload=synth_small", "workload.n_queries=8", "runtime.replan=true"])).summary
    assert "runtime.replan" in s["settings_not_applied"]
    s = run(compose([*SMALL, "arrivals=poisson", "arrivals.rate=1", "runtime.replan_ratio=2"])).summary
    assert "runtime.replan_ratio" in s["settings_not_applied"]


@pytest.mark.slow   # a second and a half or more
def test_pull_keeps_requests_in_the_models_queue_while_no_engine_would_admit_them(monkeypatch):
    import mosaic.graphs.coordinator as co
    queued = []
    route = co.GraphCoordinator._route

    def counting(self, n):
        route(self, n)
        queued.append(n in self.waiting[n.spec.model])

    monkeypatch.setattr(co.GraphCoordinator, "_route", counting)
    starved = ["workload=synth_small", "workload.n_queries=60", "cluster.n_workers=6", "arrivals=poisson",
               "arrivals.rate=5", "engine.num_gpu_blocks=2048"]
    pulled = run(compose([*starved, "runtime=pull"]))
    assert any(queued) and pulled.summary["online"]["answered"] == 60   # held centrally, then all served
    queued.clear()
    routed = run(compose([*starved, "runtime=least_outstanding"]))
    assert not any(queued) and routed.graph[0].requests != pulled.graph[0].requests
