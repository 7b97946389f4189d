"""Requests the engine cannot serve as asked (mosaic/costs/predict.py admit_requests): a prompt at or
beyond the context window, prompt + output beyond it, or beyond the KV cache one sequence can have.
Refused before any stage runs with one line (how many, the first ids, the setting to change), or
with workload.oversize=truncate cut to fit and counted in summary.json; never served as something else."""
import copy
import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from mosaic.cluster import Cluster
from mosaic.config.schema import AggregationConfig, SchedulerConfig, WorkloadConfig
from mosaic.core.errors import ConfigError
from mosaic.costs.predict import admit_requests
from mosaic.profiles import parse_profiles
from mosaic.run.app import run
from mosaic.cli.job import run_job
from mosaic.run.pipeline import run_pipeline
from mosaic.workload.types import Outcome, Query, Workload, aggregator_request_id, expert_request_id
from tests.helpers import config
from tests.workload.test_traces import fake_dataset

OPTIONS = "The options are: (A) a (B) b (C) c (D) d"


class NoRun:
    """A backend that must not be reached: the check comes before any stage."""

    def run(self, *a):
        raise AssertionError("a stage ran")


def question_dir(tmp_path: Path, big_chars: int, n: int = 12) -> Path:
    """GPQA-named question files whose test question 3 is `big_chars` characters long."""
    recs = [{"question": f"Question {i}? {OPTIONS}", "gold_answer": "ABCD"[i % 4]} for i in range(n)]
    recs[3] = {**recs[3], "question": "y" * big_chars + recs[3]["question"]}
    (tmp_path / "GPQA_test.json").write_text(json.dumps(recs))
    (tmp_path / "GPQA_train.json").write_text(json.dumps(recs[:3] + recs[4:]))
    return tmp_path


def gpqa(qdir: Path, *overrides: str):
    return config("workload=gpqa", f"workload.questions_dir={qdir}", "scheduler=round_robin", *overrides)


# ---------------------------------------------------------------- prompts beyond the context window

def test_prompt_beyond_the_context_window_is_refused_before_any_stage(tmp_path):
    with pytest.raises(ConfigError) as e:
        run(gpqa(question_dir(tmp_path, 200_000)))
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("workload: 3 of 48 requests cannot be served as asked")
    assert "gpqa-test-00003/" in msg and ">= max_model_len 32768" in msg and "workload.oversize=truncate" in msg


def test_fifty_megabyte_question_is_the_one_line_error_not_an_engine_stall(tmp_path, capsys):
    qdir = question_dir(tmp_path, 50 * 2**20)
    assert run_job(gpqa(qdir), tmp_path / "out") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "cannot be served as asked" in err and "stalled" not in err
    assert "prompt 13107" in err and "workload.oversize=truncate" in err


def test_truncate_cuts_the_prompt_to_fit_and_counts_it(tmp_path):
    out = run(gpqa(question_dir(tmp_path, 200_000), "workload.oversize=truncate"))
    s, res = out.summary, out.result
    assert s["admission"]["truncated_requests"] == 3 and s["n_failed_requests"] == 0
    q = res.workload.queries[3]
    assert q.prompt_tokens == 32767 and q.text.endswith(OPTIONS) and len(q.text) < 200_000
    served = [r for r in res.expert.trace.requests if r.query_id == q.id]
    assert len(served) == 3 and all(r.prompt_tokens + r.output_tokens <= 32768 for r in served)
    # Every other query is exactly what the workload generated.
    assert all(r.prompt_tokens < 200 for r in res.expert.trace.requests if r.query_id != q.id)
    assert len(res.expert.trace.requests) == s["n_expert_requests"] == 3 * 12


def test_oversize_setting_is_checked():
    with pytest.raises(ConfigError, match=r"workload.oversize: 'clip' is not one of \['reject', 'truncate'\]"):
        run(config("workload=synth_small", "workload.n_queries=2", "workload.oversize=clip"))


def test_a_workload_that_fits_is_returned_untouched(profiles):
    from mosaic.workload.sources.synthetic import generate
    from mosaic.workload.answer_model import SyntheticSpec
    w = generate(SyntheticSpec(preset="mmlu_pro", n_queries=50), profiles, seed=1)
    for oversize in ("reject", "truncate"):
        got, truncated = admit_requests(w, Cluster.uniform(4, 80.0), profiles, "tp", oversize)
        assert got is w and truncated == ()
    assert run(config("workload=synth_small", "workload.n_queries=5")).summary["admission"]["truncated_requests"] == 0


# ---------------------------------------------------------------- recorded outputs beyond the window

def test_recorded_output_longer_than_the_window_is_not_clipped(tmp_path):
    """A trace length used to be clipped to the context window silently; now it reaches the check."""
    cfg = fake_dataset(tmp_path)
    zpath = Path(cfg["traces_dir"]) / "good.zip"
    import zipfile
    with zipfile.ZipFile(zpath) as z:
        recs = json.loads(z.read(z.namelist()[0]))
    recs[0]["generated_text"] = "w" * (4 * 40_000)          # 40000 tokens: beyond the 32768 window
    with zipfile.ZipFile(zpath, "w") as z:
        z.writestr("model_outputs.json", json.dumps(recs))

    def trace_cfg(**extra):
        c = config("workload=trace_mmlu_pro", "scheduler=round_robin")
        c.workload = OmegaConf.merge(OmegaConf.structured(WorkloadConfig),
                                     {**cfg, "profiles": "moa6_a100", "n_queries": None, **extra})
        return c

    with pytest.raises(ConfigError) as e:
        run(trace_cfg())
    msg = str(e.value)
    assert "fake-00000/Qwen" in msg and "output 40000 tokens > max_model_len 32768" in msg and "\n" not in msg
    out = run(trace_cfg(oversize="truncate"))
    n = sum(q.experts.count("Qwen") for q in out.result.workload.queries if q.id == "fake-00000")
    assert n >= 1 and out.summary["admission"]["truncated_requests"] == n
    served = {r.request_id: r for r in out.result.expert.trace.requests}
    r = served[expert_request_id("fake-00000", "Qwen")]
    assert r.prompt_tokens + r.output_tokens == 32768


# ---------------------------------------------------------------- the KV cache, and the aggregator's half

def small_profiles(kv_capacity=200):
    """A hand-made engine with a 200-token context and two models ('Exp', 'Agg') whose measured KV
    cache holds `kv_capacity` tokens."""
    engine = {"device": "test", "memory_gib": 1.0, "max_num_seqs": 8, "max_num_batched_tokens": 512,
              "max_model_len": 200, "gpu_memory_utilization": 0.5, "step_overhead_ms": 1.0,
              "per_seq_overhead_ms": 0.0, "linear_ms_by_tokens": [[1, 1.0], [2, 2.0]],
              "linear_reference_params_b": 1.0, "hbm_bandwidth_gbs": 1.0, "bandwidth_efficiency": 1.0,
              "peak_tflops": 1.0, "flops_efficiency": 1.0}
    model = {"kind": "instruct", "hf_id": "x", "params_b": 1.0, "weight_gib": 0.0, "kv_bytes_per_token": 1024,
             "n_layers": 2, "hidden_size": 64, "load_time_s": 10.0, "kv_capacity": kv_capacity,
             "output": {"shape": "one", "mean_tokens": 20, "cap": 64},
             "cost": {"step_ms": 2.0, "token_ms": 0.5, "ctx_ms": 0.01, "len2_ms": 0.001}}
    return parse_profiles({"engine": engine, "length_shapes": {"one": [{"weight": 1, "median": 1, "sigma": 0.5}]},
                           "models": {"Exp": model, "Agg": copy.deepcopy(model)}})


def hand_workload(prompt, out, agg_out=10):
    q = Query("q0", "all", prompt, "A", ("Exp",), 0.0, "x" * (4 * prompt))
    return Workload("hand", 0, (q,), ("Exp",), "Agg",
                    {expert_request_id("q0", "Exp"): Outcome(out, "A"), aggregator_request_id("q0"): Outcome(agg_out, "A")})


def test_kv_cache_limit_keeps_the_admission_watermark():
    """200 KV tokens, 1% (2) kept free at admission: one sequence may hold 198 of the 200-token window."""
    p, cluster = small_profiles(), Cluster.uniform(1, 1.0)
    ok = hand_workload(150, 48)
    assert admit_requests(ok, cluster, p, "scheduled") == (ok, ())
    with pytest.raises(ConfigError, match=r"prompt 150 \+ output 50 tokens > the 198 its KV cache holds .*cluster.memory_gib"):
        run_pipeline(hand_workload(150, 50), cluster, p, SchedulerConfig(name="round_robin"), NoRun(),
                     AggregationConfig(policy="always", tau=None, placement="scheduled"))
    got, truncated = admit_requests(hand_workload(150, 50), cluster, p, "scheduled", "truncate")
    assert truncated == ("q0/Exp",) and got.outcomes["q0/Exp"].output_tokens == 48
    assert got.queries[0].prompt_tokens == 150


def test_aggregator_output_must_fit_the_half_its_prompt_leaves():
    p, cluster = small_profiles(kv_capacity=1000), Cluster.uniform(1, 1.0)
    with pytest.raises(ConfigError, match=r"q0/agg \(aggregator output 150 tokens > 100"):
        admit_requests(hand_workload(20, 20, agg_out=150), cluster, p, "scheduled")
    got, truncated = admit_requests(hand_workload(20, 20, agg_out=150), cluster, p, "scheduled", "truncate")
    assert truncated == ("q0/agg",) and got.outcomes["q0/agg"].output_tokens == 100


def test_prompt_at_the_window_is_cut_to_leave_one_token():
    p, cluster = small_profiles(kv_capacity=1000), Cluster.uniform(1, 1.0)
    with pytest.raises(ConfigError, match=r"1 of 2 requests .* q0/Exp \(prompt 200 tokens >= max_model_len 200\)"):
        admit_requests(hand_workload(200, 5), cluster, p, "scheduled")
    got, truncated = admit_requests(hand_workload(200, 5), cluster, p, "scheduled", "truncate")
    q = got.queries[0]
    assert truncated == ("q0/Exp",) and q.prompt_tokens == 199 and len(q.text) == 4 * 199
    assert got.outcomes["q0/Exp"].output_tokens == 1


def with_blocks(p, n, block_size=8):
    from dataclasses import replace
    return replace(p, engine=replace(p.engine, num_gpu_blocks=n, block_size=block_size))


def test_a_kv_cache_set_by_num_gpu_blocks_is_named_when_a_request_does_not_fit_it():
    """25 blocks of 8 = a 200-token cache: the window fits, but prompt + output beyond the cache's 198
    is the blocks' fault, and the message says so (not cluster.memory_gib, not max_model_len)."""
    p, cluster = with_blocks(small_profiles(kv_capacity=1000), 25), Cluster.uniform(1, 1.0)
    with pytest.raises(ConfigError, match=r"prompt 150 \+ output 50 tokens > the 198 its KV cache holds for one "
                                          r"sequence at engine\.num_gpu_blocks=25.*or raise engine\.num_gpu_blocks"):
        admit_requests(hand_workload(150, 50), cluster, p, "scheduled")


def test_num_gpu_blocks_beyond_what_the_memory_holds_is_refused():
    """The measured cache holds 1000 tokens = 125 blocks of 8: 126 promises memory that is not there."""
    p, cluster = small_profiles(kv_capacity=1000), Cluster.uniform(1, 1.0)
    assert admit_requests(hand_workload(20, 20), cluster, with_blocks(p, 125), "scheduled")[1] == ()
    with pytest.raises(ConfigError, match=r"engine\.num_gpu_blocks=126 is more KV cache than model Exp can have "
                                          r"\(125 blocks of 8 tokens .*set it to at most 125"):
        admit_requests(hand_workload(20, 20), cluster, with_blocks(p, 126), "scheduled")
