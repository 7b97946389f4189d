"""vLLM backend pieces that need no engine: device split, prompts, answers, registry."""
import pytest

from mosaic.core.errors import ConfigError
from vllm_backend.backend import device_env, extract_answer, prompt_ids
from vllm_backend.models import ModelRegistry


def test_cpu_cores_are_split_between_workers(monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda _: {0, 1, 2, 3})
    envs = device_env(2, "cpu", 1)
    assert [e["VLLM_CPU_OMP_THREADS_BIND"] for e in envs] == ["0,1", "2,3"]
    assert all(e["VLLM_CPU_KVCACHE_SPACE"] == "1" and e["CUDA_VISIBLE_DEVICES"] == "" for e in envs)
    assert [e["CUDA_VISIBLE_DEVICES"] for e in device_env(3, "cuda", 1)] == ["0", "1", "2"]
    with pytest.raises(ConfigError, match="backend.options.device"):
        device_env(1, "tpu", 1)


def test_prompts_are_deterministic_and_in_vocabulary():
    a = prompt_ids("q1/Qwen", 50)
    assert a == prompt_ids("q1/Qwen", 50) and len(a) == 50
    assert a != prompt_ids("q2/Qwen", 50)
    assert all(4 <= t < 504 for t in a)
    # Distinct requests never open with the same tokens, so vLLM's prefix cache cannot skip part of
    # a prefill the simulator charges in full.
    heads = {tuple(prompt_ids(f"q{i}/Qwen", 300)[:4]) for i in range(5000)}
    assert len(heads) == 5000
    assert len(prompt_ids("x", 2)) == 2


@pytest.mark.parametrize("text, letter", [("so the answer is (C).", "C"), ("The answer is B", "B"),
                                          ("answer is (A) ... no, the answer is (D)", "D"), ("I don't know", None)])
def test_extract_answer(text, letter):
    assert extract_answer(text) == letter


def test_registry_errors_name_the_model():
    reg = ModelRegistry({"name": "t", "engine": {"max_model_len": 512},
                         "models": {"A": {"hf_id": "org/a", "engine": {"dtype": "float16"}}, "B": {}}})
    assert reg.resolve("A") == ("org/a", {"max_model_len": 512, "dtype": "float16"})
    with pytest.raises(ConfigError, match="no entry for model 'C'"):
        reg.resolve("C")
    with pytest.raises(ConfigError, match="models=t.B: give one of hf_id, path or tiny"):
        reg.resolve("B")
    with pytest.raises(ConfigError, match="lists no models"):
        ModelRegistry({"name": "empty"})


def test_registry_settings_an_engine_would_fail_on_are_refused_up_front(tmp_path):
    """Each reached a started engine (exit 1, an engine failure per request) before."""
    with pytest.raises(ConfigError, match=r"models=t.A.path: no such file or folder /nowhere/model"):
        ModelRegistry({"name": "t", "models": {"A": {"path": "/nowhere/model"}}}).check_local_paths()
    ModelRegistry({"name": "t", "models": {"A": {"path": str(tmp_path)}, "B": {"hf_id": "org/b"}}}).check_local_paths()
    with pytest.raises(ConfigError, match="models.engine.max_model_len must be an integer number of tokens >= 16"):
        ModelRegistry({"name": "t", "engine": {"max_model_len": 0}, "models": {"A": {"hf_id": "org/a"}}})
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="models.cache_dir=.* is a file"):
        ModelRegistry({"name": "t", "cache_dir": str(tmp_path / "f"), "models": {"A": {"tiny": {}}}})


@pytest.mark.parametrize("options, match", [
    ({"kv_cache_gib": -1}, "kv_cache_gib must be an integer number of GiB >= 1"),   # was rounded up to 1
    ({"kv_cache_gib": "abc"}, "kv_cache_gib must be an integer"),                 # was a TypeError
    ({"max_tokens": -1, "replay": False}, "max_tokens must be an integer >= 1 or null"),
    ({"kill_grace_s": float("nan")}, "kill_grace_s must be a finite number"),      # failed after the stage
    ({"timeout_s": float("nan")}, "timeout_s must be a number of seconds > 0"),
    ({"replay": "yes"}, "replay must be true or false"),
])
def test_backend_options_are_checked_before_any_engine(options, match):
    from mosaic.run.builder import build_run, compose
    from vllm_backend.backend import VllmBackend

    r = build_run(compose(["workload=smoke", "models=tiny", "cluster=cpu2"]))
    with pytest.raises(ConfigError, match=match):
        VllmBackend(r.cluster, r.profiles, models=r.config.models.__dict__, launcher="local", **options)


def test_cuda_asked_on_a_machine_without_a_gpu_is_refused(monkeypatch):
    import shutil

    from mosaic.fitting.options import device_option
    from mosaic.run.builder import build_run, compose
    from vllm_backend.backend import VllmBackend

    monkeypatch.setattr(shutil, "which", lambda name: None)
    r = build_run(compose(["workload=smoke", "models=tiny", "cluster=cpu2"]))
    with pytest.raises(ConfigError, match="device=cuda but this machine has no NVIDIA GPU"):
        VllmBackend(r.cluster, r.profiles, models=r.config.models.__dict__, launcher="local", device="cuda")
    with pytest.raises(ConfigError, match="device=cuda but this machine has no NVIDIA GPU"):
        device_option("cuda", 1)
    assert device_option("auto", 1) == "cpu"
