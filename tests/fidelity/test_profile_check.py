"""The profile check's comparison, verdict and report, with the engine measurement replaced by rows
made from the profile's own step model times a known factor (the slow suite runs it on real engines,
through the fidelity suite)."""
import json

import pytest

from mosaic.core.errors import ConfigError
from mosaic.fidelity import profile_check
from mosaic.profiles.calibration import _parts, predict_ms
from mosaic.backends.vllm import probe
from mosaic.backends.vllm.probe import WARM, _replica_steps, grid_cells, window_terms
from mosaic.profiles import load_profiles

PROFILE = load_profiles("tiny_cpu")


def _cfg(**change):
    cfg = profile_check.probe_settings({"name": "tiny"} | _registry(), {"device": "cpu", "kv_cache_gib": 1},
                                       "tiny_cpu", ["Qwen"], 2)
    return {**cfg, **change}


def _registry():
    from mosaic.run.builder import compose
    from omegaconf import OmegaConf

    return OmegaConf.to_container(compose(["models=tiny"]).models, resolve=True)


def use_measure(monkeypatch, measure):
    """Every engine measurement (probe.measure, and each model of probe.measure_models) by `measure`."""
    monkeypatch.setattr(probe, "measure", measure)
    monkeypatch.setattr(probe, "measure_models", lambda models, env, grid, timeout_s=900, on_progress=None, after=None:
                        [measure(path, args, env, grid, on_progress=on_progress) for path, args in models])


def _fake_measure(factors, kv_blocks=None, block_size=128, budget=2048, kind_factors=None, worker_factors=None,
                  group_factors=None):
    """measure() for model m on a worker: every grid cell's rows at factor[m] x the profile's prediction
    (x kind_factors[kind] for a kind of cell, x worker_factors[w] on worker w; the terms of a group of
    mosaic/profiles/calibration.py GROUPS x group_factors[group])."""
    calls = []

    def measure(path, engine_args, env, grid, on_progress=None, after=None):
        worker = int(env["VLLM_CPU_OMP_THREADS_BIND"].split("-")[0].split(",")[0])   # its first core
        name = path.rstrip("/").split("/")[-1]
        calls.append(name)
        cost = PROFILE.models[name].cost
        rows = []
        for rep in range(grid["repeats"]):
            for cell in grid_cells(grid):
                shape = _replica_steps([(str(i), *r) for i, r in enumerate(cell.requests)], block_size, 5000, 64,
                                       budget)
                row = {"kind": cell.kind, "cell": cell.label, "rep": rep, **window_terms(shape)}
                # the spread over repeats: the second repeat 10% slower than the others
                row["ms"] = (sum(v * (group_factors or {}).get(g, 1.0) for g, v in _parts(cost, row).items())
                             * factors[name] * (1.1 if rep == 1 else 1.0)
                             * (kind_factors or {}).get(cell.kind, 1.0) * (worker_factors or {}).get(worker, 1.0))
                rows.append(row)
                if on_progress:
                    on_progress()
        kv = PROFILE.models[name].kv_capacity
        # the first request: its steps at the machine's speed, plus 30 ms of one-off set-up
        warm = window_terms(_replica_steps([("warm", *WARM)], block_size, 5000, 64, budget))
        warm["ms"] = sum(v * (group_factors or {}).get(g, 1.0) for g, v in _parts(cost, warm).items()) * factors[name] + 30.0
        return {"startup_s": 4.0, "load_time_s": 20.0, "unload_time_s": 5.0, "submit_ms": 0.3,
                "kv_blocks": kv_blocks or kv // block_size, "block_size": block_size,
                "max_num_batched_tokens": budget, "scheduling": "v1", "steps": rows, "warm": warm, "sessions": []}

    return measure, calls


def test_a_machine_that_matches_its_profile_passes(monkeypatch):
    measure, calls = _fake_measure({"Qwen": 1.0, "Exaone": 1.0})
    use_measure(monkeypatch, measure)
    result = profile_check.check_profile(_cfg(model="Qwen,Exaone"))
    assert calls == ["Qwen", "Qwen", "Exaone", "Exaone"]   # each model on both workers at once
    assert result["matches"] and result["reasons"] == []
    q = result["models"]["Qwen"]
    assert q["ratio"] == pytest.approx(1.0) and q["spread"] == pytest.approx(0.05)
    assert q["profile_load_s"] == PROFILE.models["Qwen"].load_time_s and q["load_s"] == 20.0
    text = profile_check.report(result)
    assert "- Qwen: 1.00x (±5%; decode 1.00x, prefill 1.00x; worker 0 1.00x, worker 1 1.00x)" in text
    assert "describes this machine within ±10%" in text
    json.dumps(result)   # written as JSON by the CLI and the fidelity suite


def test_a_slower_machine_is_caught_and_the_re_profile_command_named(monkeypatch):
    use_measure(monkeypatch, _fake_measure({"Qwen": 1.0, "Exaone": 2.5})[0])
    result = profile_check.check_profile(_cfg(model="Qwen,Exaone"))
    assert not result["matches"]
    assert result["models"]["Exaone"]["ratio"] == pytest.approx(2.5)
    assert result["reasons"] == ["Exaone: batches take 2.50x the profile's prediction (tolerance ±10%)"]
    text = profile_check.report(result)
    assert "does NOT describe this machine" in text
    assert "python experiments/profile_models.py model=all out=" in text
    # a wider tolerance accepts the same measurement
    assert profile_check.check_profile(_cfg(model="Qwen,Exaone", tolerance=2.0))["matches"]


def test_mixed_batches_are_compared_apart_from_the_uniform_ones(monkeypatch):
    """A step model that misprices steps where prefill chunks share a step with decodes shows as the
    mixed cells' ratio beside the uniform cells', measured in the same repeats."""
    measure = _fake_measure({"Exaone": 1.0}, kind_factors={"mixed": 1.07})[0]
    use_measure(monkeypatch, measure)
    cfg = _cfg(model="Exaone")
    cfg["grid"] = {**cfg["grid"], "mixed": [[96, 16, 1000, 200, 600]]}
    kinds = profile_check.check_profile(cfg)["models"]["Exaone"]["kinds"]
    assert kinds["mixed"] == pytest.approx(1.07) and kinds["decode"] == pytest.approx(1.0)
    assert kinds["prefill"] == pytest.approx(1.0)
    result = profile_check.check_profile(cfg)
    assert "prefill 1.00x, mixed 1.07x" in profile_check.report(result)
    # one kind of batch: no per-kind breakdown
    cfg["grid"] = {"repeats": 2, "decode": [[4, 64, 9]]}
    assert "decode 1.00x" not in profile_check.report(profile_check.check_profile(cfg))


def test_a_core_slower_than_the_other_shows_in_its_worker_ratio(monkeypatch):
    use_measure(monkeypatch, _fake_measure({"Exaone": 1.0}, worker_factors={1: 1.14})[0])
    m = profile_check.check_profile(_cfg(model="Exaone"))["models"]["Exaone"]
    assert m["workers"] == {"0": pytest.approx(1.0), "1": pytest.approx(1.14)}
    assert 1.0 <= m["ratio"] <= 1.14


def test_busy_measures_on_fewer_workers_with_the_rest_idle(monkeypatch):
    """busy=1: the same batches on worker 0 alone, bound to the cores it has among n_workers."""
    envs = []
    measure, calls = _fake_measure({"Qwen": 0.8, "Exaone": 1.0})
    use_measure(monkeypatch, lambda path, args, env, grid, **k: envs.append(env)
                        or measure(path, args, env, grid, **k))
    result = profile_check.check_profile(_cfg(model=["Qwen", "Exaone"], busy=1))   # as Hydra gives model=[A,B]
    assert calls == ["Qwen", "Exaone"]
    from mosaic.backends.vllm.backend import device_env
    assert envs == [device_env(2, "cpu", 1)[0]] * 2   # worker 0's half of the host, not all of it
    assert result["busy"] == 1 and result["n_workers"] == 2
    assert result["models"]["Qwen"]["ratio"] == pytest.approx(0.8)
    assert "1 of 2 workers busy (the rest idle)" in profile_check.report(result)
    assert "workers busy" not in profile_check.report(profile_check.check_profile(_cfg(model="Exaone")))


def test_an_engine_sized_differently_from_the_profile_is_named(monkeypatch):
    use_measure(monkeypatch, _fake_measure({"Qwen": 1.0}, kv_blocks=100, budget=1024)[0])
    result = profile_check.check_profile(_cfg())
    assert not result["matches"]
    (why,) = result["reasons"]
    assert "KV capacity 12800 tokens" in why and "token budget 1024 (profile: 2048)" in why


def test_a_run_confined_differently_from_the_profile_is_named(monkeypatch):
    """tiny_cpu was measured with the engine-core process floating (cpu_confine=start); checked with
    every engine process kept on its worker's cores, the check says the engine differs and how."""
    envs = []
    measure, _ = _fake_measure({"Qwen": 1.0})
    use_measure(monkeypatch, lambda path, args, env, grid, **k: envs.append(env)
                        or measure(path, args, env, grid, **k))
    cfg = _cfg()
    cfg["backend"]["options"]["cpu_confine"] = "always"
    result = profile_check.check_profile(cfg)
    assert {e["MOSAIC_CPU_CONFINE"] for e in envs} == {"always"}   # the engines ran confined
    assert not result["matches"]
    assert result["reasons"] == ["Qwen: the engine differs: backend.options.cpu_confine always (profile: start)"]
    # the re-profile command measures the way the checked runs are confined
    assert "profile_models.py model=Qwen out=mosaic/profiles/data/tiny_cpu.yaml backend.options.cpu_confine=always`" in profile_check.report(result)
    assert profile_check.check_profile(_cfg())["matches"]


@pytest.mark.slow
@pytest.mark.parametrize("change, match", [
    ({"tolerance": 0}, "tolerance must be a fraction"),
    ({"tolerance": "x"}, "tolerance must be a fraction"),
    ({"n_workers": 0}, "n_workers must be an integer >= 1"),
    ({"busy": 3}, "busy must be an integer from 1 to n_workers=2"),
    ({"busy": 0}, "busy must be an integer from 1 to n_workers=2"),
    ({"profile": "nope_cpu"}, "profile=nope_cpu: no such file"),
    ({"profile": ""}, "profile=: no such file"),
    ({"model": "Nope"}, "model=Nope: not in the profile"),
    ({"grid": {"repeats": 1, "batch_sizes": [], "context_lengths": [], "outputs": [], "prefill": []}},
     "grid: no batches"),
])
def test_bad_options_are_refused_before_any_engine_starts(monkeypatch, change, match):
    use_measure(monkeypatch, lambda *a, **k: pytest.fail("an engine was started"))
    with pytest.raises(ConfigError, match=match):
        profile_check.check_profile(_cfg(**change))


def test_a_profile_without_measured_step_costs_cannot_be_checked(monkeypatch, tmp_path):
    import yaml

    from mosaic.profiles.loader import BUNDLED_DIR

    doc = yaml.safe_load((BUNDLED_DIR / "tiny_cpu.yaml").read_text())
    doc["models"]["Qwen"].pop("cost")
    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump(doc))
    use_measure(monkeypatch, lambda *a, **k: pytest.fail("an engine was started"))
    with pytest.raises(ConfigError, match="Qwen in p.yaml has no measured step cost"):
        profile_check.check_profile(_cfg(profile=str(p)))
    doc["models"] = {"Other": doc["models"]["Exaone"]}
    doc["engine"]["host_contention"].pop("models")
    doc["engine"]["host_contention"].pop("by_batch")
    p.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match=r"model=all: no model of the registry .* is in the profile \(Other\)"):
        profile_check.check_profile(_cfg(profile=str(p), model="all"))
