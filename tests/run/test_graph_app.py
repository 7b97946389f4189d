"""A run of agent graphs through the run builder and the CLI's job."""
import csv
import json

import numpy as np
import pytest

from mosaic.run.app import run
from mosaic.run.builder import compose
from mosaic.cli.job import run_job
from mosaic.core.errors import ConfigError

SMALL = ["workload=synth_small", "workload.n_queries=12"]


def test_a_tree_run_writes_every_request_and_query(tmp_path):
    ov = [*SMALL, "topology=tree", "topology.early_exit=agreement", "topology.concurrency=4"]
    assert run_job(compose(ov), tmp_path, ov) == 0
    s = json.loads((tmp_path / "summary.json").read_text())
    rows = list(csv.DictReader(open(tmp_path / "trace.csv")))
    queries = list(csv.DictReader(open(tmp_path / "queries.csv")))
    assert len(rows) == 12 * 13 and len(queries) == 12 == s["n_queries"]
    assert s["n_served_requests"] + s["n_cancelled_requests"] == len(rows)
    assert s["n_cancelled_requests"] == sum(r["status"] == "cancelled" for r in rows) > 0
    assert s["cancelled_by"] == {"agreement": s["n_cancelled_requests"]}
    assert s["query_latency_s"]["p50"] == pytest.approx(float(np.median([float(q["latency_s"]) for q in queries])))
    assert sum(v["served"] + v["cancelled"] for v in s["invocations"].values()) == len(rows)
    assert s["topology"]["kind"] == "tree" and s["provenance"]["overrides"] == ov
    assert (tmp_path / "timeline.png").stat().st_size > 0
    assert json.loads((tmp_path / "trace.perfetto.json").read_text())["traceEvents"]
    assert set(json.loads((tmp_path / "plan.json").read_text())["placement"].values()) == {"Qwen", "Gemma", "LlamaR1"}
    # Busy: loading, or holding a request (release to finish), not the whole run the engine stays loaded.
    sessions = list(csv.DictReader(open(tmp_path / "sessions.csv")))
    for w in s["workers"]:
        spans = sorted([(float(r["release_s"]), float(r["finish_s"])) for r in rows if r["worker"] == str(w["id"])
                        and r["release_s"] and r["finish_s"]]
                       + [(float(x["load_start_s"]), float(x["run_start_s"])) for x in sessions
                          if x["worker"] == str(w["id"])])
        busy, end = 0.0, float("-inf")
        for a, b in spans:
            busy, end = (busy + b - max(a, end), b) if b > end else (busy, end)
        assert w["busy_s"] == pytest.approx(busy) and w["idle_s"] == pytest.approx(s["makespan_s"] - busy)
    assert min(w["busy_s"] for w in s["workers"]) < s["makespan_s"] - 1.0   # was the makespan on every worker


@pytest.mark.slow
def test_same_seed_same_graph_run():
    ov = [*SMALL, "topology=dense", "topology.layers=[3,3]", "topology.early_exit=qmetric", "cluster.n_workers=4"]
    a, b = run(compose(ov)), run(compose(ov))
    assert a.graph[0] == b.graph[0]
    c = run(compose([*ov, "seed=1"]))
    assert c.graph[0] != a.graph[0]


@pytest.mark.parametrize("extra, message", [
    (["backend=vllm", "models=tiny", "backend.options.replay=false", "topology.overlap=incremental"],
     "needs backend.options.replay=true"),
    (["topology.agents=[Qwen,Gemma,Nope]"], "model Nope is not in the profiles"),
    (["cluster.n_workers=2"], "set cluster.n_workers >= 3"),
    (["engine.scheduling=v0"], "engine.scheduling=v1"),
    (["cluster.memory_gib=18"], "raise cluster.memory_gib"),
    (["topology.placement=scheduler", "scheduler=data_parallel"], "or topology.placement=demand"),
])
def test_what_a_graph_run_cannot_do_is_refused_naming_the_fix(extra, message, without_vllm):
    # settings are refused before the backend's install check (it failed where vLLM was not installed)
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("[", r"\[")):
        run(compose([*SMALL, "topology=tree", *extra]))


@pytest.mark.slow
@pytest.mark.parametrize("scheduler", ["ilp", "engine_aware"])
def test_the_scheduler_core_places_a_graphs_models(scheduler):
    out = run(compose([*SMALL, "topology=tree", "topology.placement=scheduler", f"scheduler={scheduler}",
                       "cluster.n_workers=6"]))
    placement = out.graph[1]
    assert out.summary["scheduler"] == scheduler     # the summary names the policy that placed them
    assert sorted(placement) == list(range(6))
    assert set(placement.values()) == {"Qwen", "Gemma", "LlamaR1"}   # every model of the graph has a worker
    # LlamaR1 (reasoning, ~3400 tokens per answer, 4 of 13 agents incl. the aggregator) needs the most.
    counts = {m: list(placement.values()).count(m) for m in set(placement.values())}
    assert counts["LlamaR1"] == max(counts.values())


def test_a_graph_run_names_each_flat_pipeline_setting_it_was_given_and_ignores(caplog):
    base = ("topology=tree", "workload=synth_small", "workload.n_queries=2")
    assert run(compose(base)).summary["settings_not_applied"] == []
    with caplog.at_level("WARNING", logger="mosaic.run.app"):
        s = run(compose([*base, "scheduler=ilp", "scheduler.node_limit=7", "aggregation=tau067", "workload.k=2",
                       "workload.skill_spread=0.1", "workload.aggregator_follow=0.5"])).summary
    # aggregator_follow is read (mosaic/graphs/outcomes.py): not listed
    assert s["settings_not_applied"] == ["scheduler.name", "scheduler.node_limit", "aggregation.name",
                                         "workload.k", "workload.skill_spread"]
    assert "workload.k=2 is not applied: topology tree runs an agent graph" in caplog.text
    assert "topology.placement=scheduler would place the graph with the scheduler" in caplog.text
    # placed by the scheduler: its settings are read, all but K (one model per worker)
    s = run(compose([*base, "topology.placement=scheduler", "scheduler=least_loaded",
                   "scheduler.max_models_per_worker=2"])).summary
    assert s["settings_not_applied"] == ["scheduler.max_models_per_worker"]


def test_a_graph_with_its_own_profiles_says_it_does_not_read_the_workloads():
    base = ["topology=faster_moa_tree", "cluster=h200x8", "workload=synth_small", "workload.n_queries=2"]
    assert run(compose(base)).summary["settings_not_applied"] == []
    s = run(compose([*base, "workload.profiles=tiny_cpu"])).summary
    assert s["settings_not_applied"] == ["workload.profiles"]


def test_the_simulator_says_it_does_not_read_the_engine_registry(caplog):
    with caplog.at_level("WARNING", logger="mosaic.run.app"):
        s = run(compose(["workload=synth_small", "workload.n_queries=4", "+models.engine.bogus=1"])).summary
    assert s["settings_not_applied"] == ["models.engine.bogus"]
    assert "models.engine.bogus=1 is not applied: backend sim runs the profiles" in caplog.text


def test_a_graph_run_reports_oversize_and_shared_hosts_it_ignores_and_reads_the_dataset(caplog):
    base = ["topology=tree", "workload=synth_small", "workload.n_queries=2"]
    with caplog.at_level("WARNING", logger="mosaic.run.app"):
        s = run(compose([*base, "workload.oversize=truncate", "cluster.workers_per_host=2",
                         "workload.dataset=gpqa"])).summary
    assert s["settings_not_applied"] == ["workload.oversize", "cluster.workers_per_host"]
    assert "cluster.workers_per_host=2 is not applied: the profiles" in caplog.text
    # the graph's accuracies come from the dataset it names: the same run on gpqa differs
    assert run(compose(base)).summary["accuracy"] is not None


def test_a_graph_run_is_not_refused_for_the_flat_pipelines_requests():
    # the flat pipeline's aggregator request would not fit these blocks; the graph never sends it
    s = run(compose(["topology=tree", "workload=synth_small", "workload.n_queries=10",
                     "engine.num_gpu_blocks=2048"])).summary
    assert s["n_served_requests"] + s["n_cancelled_requests"] == 10 * 13


@pytest.mark.slow
def test_outputs_cut_to_the_context_are_counted_never_silent(caplog):
    """Reasoning agents reading reasoning precursors: a drawn output longer than the context left
    after its prompt is cut to it and counted (summary capped_outputs, a warning), and no served
    request holds more tokens than the engine's context. (A KV cache smaller than one context is
    refused, as vLLM refuses to start: test_a_kv_cache_too_small_... below.)"""
    base = ["topology=tree", "workload=synth_small", "workload.n_queries=8"]
    roomy = run(compose(base)).summary
    with caplog.at_level("WARNING", logger="mosaic.run.app"):
        out = run(compose([*base, "topology.agents=[LlamaR1,QwenR1,LlamaR1]"]))
    s, trace = out.summary, out.graph[0]
    assert roomy["capped_outputs"] == 0 and s["capped_outputs"] > 0
    assert f"{s['capped_outputs']} agent outputs drawn longer than the context" in caplog.text
    served = [x for x in trace.requests if x.status == "served"]
    context = 32768   # paper_a100's engine.max_model_len
    assert max(x.prompt_tokens + x.output_tokens for x in served) <= context
    assert sum(x.prompt_tokens + x.output_tokens == context for x in served) >= s["capped_outputs"]


def test_a_kv_cache_too_small_for_one_context_is_refused_as_in_the_flat_pipeline():
    """It ran with exit 0, every agent prompt cut to 127 tokens and 1 output token."""
    with pytest.raises(ConfigError, match=r"engine\.num_gpu_blocks=2 blocks of 128 tokens hold less than one "
                                          r"2048-token context .* at least 16"):
        run(compose(["workload=smoke", "topology=dense", "engine.num_gpu_blocks=2"]))


@pytest.mark.slow
def test_a_scheduled_placements_ilp_fallback_is_recorded_and_printed():
    """The placement's solver report was dropped: a fallback plan ran unsaid."""
    from mosaic.run.graph_app import format_table

    out = run(compose(["workload=smoke", "cluster=cpu2", "cluster.n_workers=6", "topology=tree",
                       "topology.placement=scheduler", "scheduler=ilp", "scheduler.time_limit_s=0.001"]))
    s = out.summary
    assert s["solver"]["status"] and "wall-clock guard stopped the ILP" in s["solver"]["fallback"]
    assert "ILP FALLBACK (placement)" in format_table(s)
    demand = run(compose(["workload=smoke", "cluster=cpu2", "cluster.n_workers=6", "topology=tree"])).summary
    assert demand["solver"] is None and "FALLBACK" not in format_table(demand)

