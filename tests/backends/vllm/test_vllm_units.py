"""vLLM backend pieces that need no engine: device split, prompts, answers, registry."""
import pytest

from mosaic.core.errors import ConfigError
from mosaic.backends.vllm.backend import device_env, extract_answer, prompt_ids, tp_env
from mosaic.backends.vllm.models import ModelRegistry


def test_cpu_cores_are_split_between_workers(monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda _: {0, 1, 2, 3})
    envs = device_env(2, "cpu", 1)
    assert [e["VLLM_CPU_OMP_THREADS_BIND"] for e in envs] == ["0,1", "2,3"]
    assert all(e["VLLM_CPU_KVCACHE_SPACE"] == "1" and e["CUDA_VISIBLE_DEVICES"] == "" for e in envs)
    assert [e["CUDA_VISIBLE_DEVICES"] for e in device_env(3, "cuda", 1)] == ["0", "1", "2"]
    with pytest.raises(ConfigError, match="backend.options.device"):
        device_env(1, "tpu", 1)


def test_cpu_confine_reaches_the_workers_environment_only_when_asked(monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda _: {0, 1})
    assert all("MOSAIC_CPU_CONFINE" not in e for e in device_env(2, "cpu", 1))   # default: unchanged
    assert [e["MOSAIC_CPU_CONFINE"] for e in device_env(2, "cpu", 1, "always")] == ["always", "always"]
    assert device_env(2, "cuda", 1, "always") == [{"CUDA_VISIBLE_DEVICES": "0"}, {"CUDA_VISIBLE_DEVICES": "1"}]
    env, _, _ = tp_env((0, 1), 2, "cpu", 1, True, "always")
    assert env["MOSAIC_CPU_CONFINE"] == "always" and env["VLLM_CPU_OMP_THREADS_BIND"] == "0|1"
    with pytest.raises(ConfigError, match="backend.options.cpu_confine must be one of start, always"):
        device_env(2, "cpu", 1, "never")


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
    # A relative path deeper than a Hub id's "org/name", or a hidden folder: a path, checked the same way
    # (it was neither checked nor taken for a Hub id, so the engine failed to start on it).
    for missing in ("models/llama/8b", ".cache/llama"):
        with pytest.raises(ConfigError, match=f"models=t.A.path: no such file or folder {missing}"):
            ModelRegistry({"name": "t", "models": {"A": {"path": missing}}}).check_local_paths()
        assert ModelRegistry({"name": "t", "models": {"A": {"path": missing}}}).hub_ids() == []
    with pytest.raises(ConfigError, match="models.engine.max_model_len must be an integer number of tokens >= 16"):
        ModelRegistry({"name": "t", "engine": {"max_model_len": 0}, "models": {"A": {"hf_id": "org/a"}}})
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="models.cache_dir=.* is a file"):
        ModelRegistry({"name": "t", "cache_dir": str(tmp_path / "f"), "models": {"A": {"tiny": {}}}})


@pytest.mark.slow
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
    from mosaic.backends.vllm.backend import VllmBackend

    r = build_run(compose(["workload=smoke", "models=tiny", "cluster=cpu2"]))
    with pytest.raises(ConfigError, match=match):
        VllmBackend(r.cluster, r.profiles, models=r.config.models.__dict__, launcher="local", **options)


def test_cuda_asked_on_a_machine_without_a_gpu_is_refused(monkeypatch):
    import shutil

    from mosaic.fitting.options import device_option
    from mosaic.run.builder import build_run, compose
    from mosaic.backends.vllm.backend import VllmBackend

    monkeypatch.setattr(shutil, "which", lambda name: None)
    r = build_run(compose(["workload=smoke", "models=tiny", "cluster=cpu2"]))
    with pytest.raises(ConfigError, match="device=cuda but this machine has no NVIDIA GPU"):
        VllmBackend(r.cluster, r.profiles, models=r.config.models.__dict__, launcher="local", device="cuda")
    with pytest.raises(ConfigError, match="device=cuda but this machine has no NVIDIA GPU"):
        device_option("cuda", 1)
    assert device_option("auto", 1) == "cpu"


def test_hub_models_must_be_cached_or_fetchable(tmp_path, monkeypatch):
    """mosaic.backends.vllm.models.check_hub_models: a Hub id is in the local cache, or the Hub has it and
    lets this machine fetch it; otherwise one ConfigError naming the model, before any engine."""
    hf = pytest.importorskip("huggingface_hub")
    from huggingface_hub import constants
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    from tests.cli.test_run_cli import hub_cache

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub_cache(tmp_path / "hub", ["org/cached"])))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.delenv("VLLM_USE_MODELSCOPE", raising=False)
    local = tmp_path / "weights"
    local.mkdir()
    reg = ModelRegistry({"name": "t", "models": {
        "A": {"hf_id": "org/cached"}, "B": {"hf_id": "org/absent"}, "C": {"path": str(local)},
        "D": {"tiny": {}}, "E": {"path": "org/by_path"}}})
    # Which entries are Hub ids: an hf_id, or a path that is no file here and reads "org/name".
    assert reg.hub_ids() == [("A", "org/cached"), ("B", "org/absent"), ("E", "org/by_path")]
    reg.check_hub_models(only={"A", "C", "D"})        # cached, local and tiny models need no Hub

    calls = []

    def no_network(repo, timeout=None):
        calls.append(repo)
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(hf, "model_info", no_network)
    with pytest.raises(ConfigError, match=r"^models=t.B: org/absent is not in the local Hugging Face cache and "
                                          r"the Hub \(.*\) cannot be reached \(ConnectionError: Name or service"):
        reg.check_hub_models(only={"A", "B"})
    assert calls == ["org/absent"]                     # the cached model was not looked up
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match="org/absent is not in the local Hugging Face cache and HF_HUB_OFFLINE"):
        reg.check_hub_models(only={"B"})
    assert calls == ["org/absent"]                     # offline: no network call at all
    monkeypatch.delenv("HF_HUB_OFFLINE")

    def hub_error(cls):   # as the Hub client raises them (their constructors want an HTTP response)
        e = cls.__new__(cls)
        e.args = ("404",)
        return e

    def missing(repo, timeout=None):
        raise hub_error(RepositoryNotFoundError)

    monkeypatch.setattr(hf, "model_info", missing)
    with pytest.raises(ConfigError, match=r"the Hub has no model org/absent .*check models\.models\.B\.hf_id"):
        reg.check_hub_models(only={"B"})

    class Gated:
        gated = "manual"

    def refuse(repo, **_):
        raise hub_error(GatedRepoError)

    monkeypatch.setattr(hf, "model_info", lambda repo, timeout=None: Gated())
    monkeypatch.setattr(hf, "auth_check", refuse)
    with pytest.raises(ConfigError, match="it is gated on the Hub: accept its licence"):
        reg.check_hub_models(only={"B"})
    monkeypatch.setattr(hf, "auth_check", lambda repo, **_: None)
    reg.check_hub_models(only={"B"})                   # gated, and this account has access


def test_a_registry_names_tiny_models_portably_and_builds_them_under_its_cache(tmp_path):
    from mosaic.backends.vllm.models import ModelRegistry

    reg = ModelRegistry({"name": "t", "cache_dir": str(tmp_path),
                         "models": {"A": {"tiny": {"hidden_size": 256, "layers": 1, "heads": 4, "kv_heads": 2,
                                                   "intermediate_size": 256}},
                                    "B": {"hf_id": "org/b"}}})
    assert reg.reference("A") == "tiny:A" and reg.reference("B") == "org/b"
    pytest.importorskip("tokenizers")
    path, args = reg.resolve("A")
    assert path == str(tmp_path / "A") and args["load_format"] == "dummy"


def test_only_a_workers_last_engine_ends_without_the_grace(monkeypatch):
    """Between two sessions the engine's end keeps vLLM's grace (the profiles' unload time is
    measured with it); after the last one nothing waits, so the engine is ended at once."""
    from types import SimpleNamespace

    from mosaic.backends.vllm import worker

    asked = []

    def shutdown(timeout=None):   # vLLM's client; an older one takes no timeout
        asked.append(timeout)

    worker.shutdown_engine(SimpleNamespace(engine_core=SimpleNamespace(shutdown=shutdown)))
    worker.shutdown_engine(SimpleNamespace(engine_core=SimpleNamespace(shutdown=shutdown)), 0.0)
    worker.shutdown_engine(SimpleNamespace(engine_core=SimpleNamespace(shutdown=lambda: asked.append("old"))), 0.0)
    assert asked == [None, 0.0, "old"]
    lasts = []

    def run_session(session, t0, progress, last=False):
        lasts.append((session["index"], last))
        return {"load_start_s": 0.0}, []

    monkeypatch.setattr(worker, "run_session", run_session)
    monkeypatch.setattr(worker, "isolate_from_script_dir", lambda: None)   # this process's sys.path stays
    sent = []
    queue = SimpleNamespace(put=sent.append)
    spec = {"env": {}, "worker": 0, "t0": 0.0,
            "sessions": [{"index": i, "model": "Qwen", "requests": []} for i in range(3)]}
    worker.worker_main(spec, queue)
    assert lasts == [(0, False), (1, False), (2, True)] and sent[-1]["fatal"] is None
