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
