"""A mapping given whole on the command line (workload.experts={...}) is that mapping: entries left
out do not run, entries the preset lacks are taken. Hydra merged it into the preset's."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mosaic.config.mappings import for_hydra, given_whole
from mosaic.run.builder import compose, typed
from tests.helpers import SHARED_DATA, needs_shared

ROOT = Path(__file__).resolve().parents[2]


def test_a_mapping_given_whole_replaces_the_presets():
    cfg = compose(["workload=trace_mmlu_pro", "workload.experts={Mine: {file: a.json, format: mosaic_json}}"])
    assert dict(cfg.workload.experts) == {"Mine": {"file": "a.json", "format": "mosaic_json"}}
    cfg = compose(["models=tiny", "models.models={Qwen: {tiny: {hidden_size: 64}}}"])
    assert typed(cfg).models.models == {"Qwen": {"tiny": {"hidden_size": 64}}}   # Qwen's own keys too


def test_entries_are_changed_added_and_dropped_one_by_one():
    cfg = compose(["models=tiny", "models.models.Qwen.kind=reasoning", "+models.models.New={tiny: {}}",
                   "~models.models.GLM"])
    assert cfg.models.models.Qwen.kind == "reasoning" and "New" in cfg.models.models and "GLM" not in cfg.models.models
    assert "Exaone" in cfg.models.models   # the rest as the preset has them


def test_only_plain_dict_values_on_mappings_of_named_entries_are_rewritten():
    args = ["workload.experts={A: {file: a}}", "workload.k=2", "models.models={}", "+models.models.x={}",
            "workload.experts={A: {}},{B: {}}", "seed={a: 1}", "backend.options={device: cpu}"]
    assert for_hydra(args) == ["++workload.experts={A: {file: a}}", "workload.k=2", "++models.models={}",
                               "+models.models.x={}", "workload.experts={A: {}},{B: {}}", "seed={a: 1}",
                               "backend.options={device: cpu}"]
    assert given_whole(for_hydra(args)) == {"workload.experts": {"A": {"file": "a"}}, "models.models": {}}


def test_options_with_defaults_still_merge():
    """backend.options={device: cpu} sets one option; the preset's others stay (kv_cache_gib, ...)."""
    cfg = compose(["backend=vllm", "backend.options={device: cpu}"])
    assert cfg.backend.options.device == "cpu" and cfg.backend.options.kv_cache_gib == 1


def cli(*args):
    return subprocess.run([sys.executable, "-m", "mosaic", "run", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_an_entry_the_mapping_lacks_is_named_with_the_ways_to_add_it():
    """It said "models.models.Nope is not a setting (did you mean models.models?)"."""
    p = cli("models=tiny", "models.models.Nope.kind=reasoning", "--cfg", "job")
    assert p.returncode == 2 and p.stderr.strip() == (
        "error: models.models.Nope.kind: models.models has no entry Nope to change; add it with "
        "+models.models.Nope=..., or give the whole mapping as models.models={...} (its entries are then the "
        "ones given)"), p.stderr


def test_cfg_job_prints_the_mapping_the_run_uses():
    p = cli("models=tiny", "models.models={Qwen: {tiny: {hidden_size: 64}}}", "--cfg", "job")
    assert p.returncode == 0, p.stderr
    assert "  models:\n    Qwen:\n      tiny:\n        hidden_size: 64\nengine:" in p.stdout, p.stdout


@needs_shared
@pytest.mark.slow
def test_a_trace_run_with_experts_given_whole_routes_to_those_only(tmp_path):
    experts = ("{Meta-Llama-3_1-8B-Instruct: {file: mmlu_pro/Meta-Llama-3_1-8B-Instruct.zip, format: mmlu_pro_zip, "
               "lengths: trace}, mathstral-7B: {file: mmlu_pro/mathstral-7B.zip, format: mmlu_pro_zip, lengths: trace}}")
    p = subprocess.run([sys.executable, "experiments/run.py", "workload=trace_mmlu_pro", f"workload.experts={experts}",
                        "workload.k=2", "workload.n_queries=40", f"workload.questions_dir={SHARED_DATA / 'questions'}",
                        f"workload.traces_dir={SHARED_DATA / 'traces'}", f"hydra.run.dir={tmp_path}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    s = json.loads((tmp_path / "summary.json").read_text())
    # the router's pick among the two given (the preset's other three experts are not candidates)
    assert set(s["expert_requests_per_model"]) <= {"Meta-Llama-3_1-8B-Instruct", "mathstral-7B"}
    assert s["n_expert_requests"] == 80
