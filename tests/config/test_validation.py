"""Bad input stops the run with one ConfigError line naming the field and the fix (issue 8, item 4)."""
import json
import math
import re
from pathlib import Path

import pytest

from mosaic.config.schema import AggregationConfig, ClusterConfig, MosaicConfig, WorkloadConfig
from mosaic.run.app import run
from mosaic.core.errors import ConfigError
from mosaic.run.builder import typed
from mosaic.cli.job import run_job
from tests.helpers import config

ROOT = Path(__file__).resolve().parents[2]


def small(*overrides):
    return config("workload=synth_small", "workload.n_queries=6", *overrides)


@pytest.mark.slow
@pytest.mark.parametrize("overrides, field", [
    (["seed=-1"], "seed must be an integer >= 0"),
    (["aggregation=always", "aggregation.tau=0.5"], "aggregation.tau=null"),
    (["aggregation=always", "aggregation.tau=1.0"], "aggregation.tau=null"),
    # the paper table pairs runs by this label: tau067 on tau 1.0 was read as the tau067 arm
    (["aggregation.name=tau067"], "aggregation.name=tau067 labels the packaged option of tau 0.6667, but this run "
                                  "has aggregation.tau=1.0"),
    (["aggregation=tau067", "aggregation.tau=0.5"], "give your setting a name of its own"),
    (["workload.skill_spread=-1"], "workload.skill_spread"),
    (["workload.routing_noise=-0.5"], "workload.routing_noise"),
    (["workload.distractor_share=1.5"], "workload.distractor_share"),
    (["workload.prior_strength=-1"], "workload.prior_strength"),
    (["workload.skill_spread=nan"], "workload.skill_spread"),
    (["workload.skill_spread=40"], "workload.skill_spread=40.0: per-category skill deviations this wide"),
    # beyond +-1000 logits: numpy overflow warnings before the error, or a root-finder's traceback
    (["workload.skill_spread=1e308"], "workload.skill_spread must be a finite number in"),
    (["workload.difficulty_accuracy=1e308"], "workload.difficulty_accuracy must be a finite number <= 1000.0"),
    (["workload.aggregator_follow=-1e308"], "workload.aggregator_follow must be a finite number in"),
    (["workload.routing_noise=1e308"], "workload.routing_noise must be a finite number in"),
    (["cluster.memory_gib=inf"], "cluster.memory_gib"),
    (["cluster.memory_gib=1e308"], "cluster.memory_gib must be finite and at most"),
    (["workload.aggregator_follow=nan"], "workload.aggregator_follow must be a finite number in"),
    (["workload.n_queries=100000000"], "workload.n_queries must be a finite number in"),
    (["cluster.n_workers=99999999999"], "cluster.n_workers must be at most 1024"),
    (["cluster.workers_per_host=0"], "cluster.workers_per_host must be an integer >= 1"),
    (["cluster.memory_gib=0.01", "workload=smoke"], "model LlamaR1 needs"),
    # Choices of settings this synthetic run does not read are still checked: a typo either way.
    (["workload.repeat_sample=bogus"], "workload.repeat_sample: 'bogus' is not one of"),
    (["workload.coupling=measure"], "workload.coupling: 'measure' is not one of"),
    (["workload.routing=table3"], "workload.routing: 'table3' is not one of"),
])
def test_run_rejects_bad_values_naming_the_field(overrides, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.").replace("(", r"\(")) as e:
        run(small(*overrides))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("overrides, field", [
    (["cluster.n_workers=0"], "cluster.n_workers must be an integer >= 1"),
    (["cluster.memory_gib=0"], "cluster.memory_gib must be > 0"),
    (["workload.k=0"], "workload.k must be a finite number >= 1"),
    (["topology=dense", "topology.layers=[2]", "topology.agents=[Qwen,Gemma,Exaone]"],
     "topology.agents lists 3 models, but the graph's largest layer has 2 agent(s), so Exaone would never run"),
    (["topology=tree", "topology.layers=[2,1]", "topology.agents=[Qwen,Gemma,Exaone]"],
     "largest cluster has 2 agent(s), so Exaone would never run"),
    (["topology=dense", "topology.layers=[1]"], "so Gemma, LlamaR1 would never run"),
    (["topology=dense", "cluster.n_workers=2"], "the graph's 3 models (Qwen, Gemma, LlamaR1) stay loaded"),
    (["topology=dense", "topology.aggregator=GLM", "cluster.n_workers=3"], "the graph's 4 models"),
])
def test_the_schema_refuses_what_a_sweep_must_catch_before_any_job(overrides, field):
    """Checked when the settings are typed (what a `-m` sweep checks for every job), not only when
    the run is built: a sweep ran its other jobs and exited 1."""
    with pytest.raises(ConfigError, match=re.escape(field)) as e:
        typed(small(*overrides))
    assert "\n" not in str(e.value)


def test_an_aggregation_label_of_ones_own_is_only_a_label():
    # a 300-character name was an OSError (looked up as a file), '../tau1' a path out of its group
    for name in ("x" * 300, "../tau1", "TAU067"):
        assert typed(small("aggregation=tau067", "aggregation.tau=0.5", f"aggregation.name={name}")).aggregation.name == name


@pytest.mark.parametrize("overrides, message", [
    (["+foo=1"], "unknown setting(s) foo: nothing reads them"),
    (["+scheduler.max_model_per_worker=2"],
     "scheduler.max_model_per_worker (did you mean scheduler.max_models_per_worker?)"),
    (["+backend.options.replay=false", "+workload.nope=1"], "unknown setting(s) workload.nope (workload has: name, kind"),
    # A section's name is no fix for a key inside it: its settings are listed.
    (["+scheduler.foo=1"], "scheduler.foo (scheduler has: name, max_models_per_worker,"),
])
def test_a_setting_nothing_reads_is_refused(overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as e:
        run(small(*overrides))
    assert "\n" not in str(e.value) and "backend.options" not in str(e.value)


def test_always_policy_without_tau_and_threshold_policies_still_run():
    assert run(small("aggregation=always")).summary["skip_rate"] == 0.0
    for preset in ("tau1", "tau067"):
        assert run(small(f"aggregation={preset}")).summary["n_queries"] == 6


def test_policy_object_refuses_a_tau_it_would_ignore():
    with pytest.raises(ConfigError, match="aggregation.policy=always"):
        AggregationConfig(policy="always", tau=0.6667)
    assert AggregationConfig(policy="always", tau=None).tau is None


def test_schema_validates_once_and_accepts_edges():
    edges = MosaicConfig(workload=WorkloadConfig(distractor_share=1.0, routing_noise=0.0, skill_spread=0.0))
    assert typed(edges).aggregation == AggregationConfig(policy="threshold", tau=1.0)
    with pytest.raises(ConfigError, match="seed"):
        MosaicConfig(seed=True)   # a bool is no seed, though Python calls it an int
    with pytest.raises(ConfigError, match="cluster.memory_gib"):
        ClusterConfig(memory_gib=math.nan)


# ---------------------------------------------------------------- empty question files

def write_questions(path: Path, n: int):
    path.write_text(json.dumps([{"question": f"Q{i}? The options are: (A) x (B) y (C) z (D) w",
                                 "gold_answer": "ABCD"[i % 4], "category": "physics"} for i in range(n)]))


@pytest.mark.parametrize("empty, what", [("GPQA_test", "question file"), ("GPQA_train", "calibration (train) file")])
def test_empty_question_or_train_file_is_a_config_error(tmp_path, empty, what):
    write_questions(tmp_path / "GPQA_test.json", 5)
    write_questions(tmp_path / "GPQA_train.json", 8)
    (tmp_path / f"{empty}.json").write_text("[]")
    with pytest.raises(ConfigError, match=r"workload\.questions_dir: .*is empty") as e:
        run(config("workload=gpqa", f"workload.questions_dir={tmp_path}"))
    assert what in str(e.value) and f"{empty}.json" in str(e.value)


# ---------------------------------------------------------------- the command line

def test_cli_prints_one_line_and_exits_non_zero(tmp_path, capsys):
    assert run_job(small("seed=-1"), tmp_path, ["seed=-1"]) == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "error: seed must be an integer >= 0" in lines[0]
    assert not (tmp_path / "summary.json").exists()


def test_cluster_device_must_be_what_the_profiles_describe():
    from mosaic.run.builder import check_device

    with pytest.raises(ConfigError, match=r"cluster.device=H100 but the profiles 'moa6_a100' were measured on "
                                          r"A100-80GB: set cluster.device=A100-80GB, .*bundled sets by device: "
                                          r"H200: faster_moa_h200; A100-80GB: moa6_a100, paper_a100; cpu: tiny_cpu"):
        run(small("cluster.device=H100"))
    check_device("A100-80GB", "A100-80GB", "x")
    check_device("cpu", "auto: {'OMP_NUM_THREADS': '1'}", "tiny_cpu")   # measured wherever it ran
    check_device("H200", "cuda: {'CUDA_VISIBLE_DEVICES': '0'}", "mine")   # a GPU of no stated kind: any GPU
    with pytest.raises(ConfigError, match="cluster.device=cpu"):
        check_device("cpu", "A100-80GB", "paper_a100")


def test_a_cpu_profile_on_a_gpu_cluster_is_said(caplog):
    """The profiler records a CPU run's environment ("auto: {...'CUDA_VISIBLE_DEVICES': ''}"), which
    matched any device: a CPU profile on an A100 cluster ran without a word."""
    from mosaic.run.builder import check_device, measured_on
    from mosaic.profiles import load_profiles

    assert measured_on(load_profiles("tiny_cpu").engine.device) == "cpu"
    assert measured_on("A100-80GB") == "a100-80gb" and measured_on("auto") == "auto"
    with caplog.at_level("WARNING", logger="mosaic.run.builder"):
        check_device("A100-80GB", load_profiles("tiny_cpu").engine.device, "tiny_cpu")
    (msg,) = [r.getMessage() for r in caplog.records]
    assert "profiles 'tiny_cpu' were measured on a CPU" in msg and "set cluster=cpu2" in msg
    caplog.clear()
    with caplog.at_level("WARNING", logger="mosaic.run.builder"):
        check_device("cpu", load_profiles("tiny_cpu").engine.device, "tiny_cpu")
    assert caplog.records == []
