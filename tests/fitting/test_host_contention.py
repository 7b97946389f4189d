"""The host-contention measurement's arithmetic and its profile update (the engines run in the
slow suite's profiler tests; here nothing starts one)."""
import shutil

import pytest
import yaml

from mosaic.core.errors import ConfigError
from mosaic.fitting.host_contention import DEFAULTS, measure_contention, request_counts, spread, step_scale, write_into
from mosaic.profiles import load_profiles
from mosaic.profiles.loader import BUNDLED_DIR


def test_step_scale_is_relative_to_the_most_busy_count():
    assert step_scale({1: [6.0, 7.0, 6.5], 2: [9.0, 10.0, 9.5]}) == {1: round(6.5 / 9.5, 3), 2: 1.0}
    assert spread([9.0, 10.0, 9.5]) == pytest.approx(0.5 / 9.5)


@pytest.mark.parametrize("change, match", [({"n_workers": 1}, "n_workers must be >= 2"),
                                           ({"out": 144}, "need 0 < out < long_out"),
                                           ({"model": "Nope"}, "Nope"),
                                           ({"requests": "1,0"}, r"requests=0: must be >= 1"),
                                           ({"requests": "4,4"}, "listed twice"),
                                           ({"spin": "maybe"}, "spin=maybe: give true or false"),
                                           ({"method": "slope"}, "method=slope: give grid")])
def test_bad_options_are_refused_before_any_engine_starts(change, match):
    with pytest.raises(ConfigError, match=match):
        measure_contention({**DEFAULTS, **change})


def test_the_block_is_written_into_the_profile_and_loads(tmp_path):
    path = tmp_path / "p.yaml"
    shutil.copy(BUNDLED_DIR / "tiny_cpu.yaml", path)
    block = {"step_scale": {1: 0.7, 2: 1.0}, "models": {"Qwen": {1: 0.6, 2: 1.0}}, "source": "test"}
    write_into(str(path), block)
    hc = load_profiles(str(path)).engine.host_contention
    assert hc.scale(1, "Qwen") == 0.6 and hc.scale(1, "GLM") == 0.7 and hc.scale(2) == 1.0
    assert yaml.safe_load(path.read_text())["models"].keys() == yaml.safe_load(
        (BUNDLED_DIR / "tiny_cpu.yaml").read_text())["models"].keys()
    with pytest.raises(ConfigError, match="no such file"):
        write_into(str(tmp_path / "missing.yaml"), block)


def test_request_counts_are_read_as_an_ascending_list():
    assert request_counts({"requests": "32,1,4"}) == [1, 4, 32]
    assert request_counts({"requests": 32}) == [32] and request_counts({"requests": "[1, 8]"}) == [1, 8]


def test_a_block_measured_by_batch_is_written_and_loads(tmp_path):
    path = tmp_path / "p.yaml"
    shutil.copy(BUNDLED_DIR / "tiny_cpu.yaml", path)
    block = {"step_scale": {1: 0.7, 2: 1.0}, "models": {"Qwen": {1: 0.6, 2: 1.0}},
             "by_batch": {"Qwen": {1: {1: 0.9, 2: 1.0}, 32: {1: 0.6, 2: 1.0}}}, "source": "test"}
    write_into(str(path), block)
    hc = load_profiles(str(path)).engine.host_contention
    assert hc.scale(1, "Qwen", 1) == 0.9 and hc.scale(1, "Qwen", 32) == 0.6 and hc.scale(1, "Qwen") == 0.6


def test_steps_are_compared_with_the_profiles_own_step_model():
    """The factors are ratios to the all-busy steps; whether those are the profiled condition is
    read off the profile's step model for the same batch (seen at 1.14-1.60x)."""
    from mosaic.fitting.host_contention import against_profile
    from mosaic.engine import CostModel

    profiles = load_profiles(str(BUNDLED_DIR / "tiny_cpu.yaml"))
    model = CostModel(profiles.model("QwenR1"), profiles.engine)
    predicted = {c: model.step_s(c, c, round(c * (256 + 80)), 0.0) for c in (1, 32)}
    per_model = {"QwenR1": {c: {1: [0.9 * p, 0.91 * p, 0.5 * p], 2: [1.4 * p]} for c, p in predicted.items()},
                 "NotProfiled": {1: {1: [0.004], 2: [0.005]}}}
    ratios = against_profile(per_model, str(BUNDLED_DIR / "tiny_cpu.yaml"), prompt=256, out=16, long_out=144)
    assert ratios == {"QwenR1": {1: {1: 0.9, 2: 1.4}, 32: {1: 0.9, 2: 1.4}}}


def test_measuring_reports_the_steps_against_the_profile_and_warns_when_all_busy_is_not_it(tmp_path, monkeypatch, capsys):
    """measure_contention with the engines stood in for: lone steps at the profile's step model,
    all-busy ones 1.4x it, as a host measured them."""
    from mosaic.fitting import host_contention
    from mosaic.engine import CostModel

    profile = tmp_path / "p.yaml"
    shutil.copy(BUNDLED_DIR / "tiny_cpu.yaml", profile)
    model = CostModel(load_profiles(str(profile)).model("QwenR1"), load_profiles(str(profile)).engine)
    out, long_out = DEFAULTS["out"], DEFAULTS["long_out"]

    def fake_round(path, args, envs, busy, cfg, outs, spin=False):
        serve = {}
        for c in (1, 32):
            step = model.step_s(c, c, round(c * (256 + (out + long_out) / 2)), 0.0) * (1.4 if busy == 2 else 1.0)
            serve[c] = [0.2 + out * step, 0.1 + long_out * step, 0.1 + out * step]
        return [{"serve_s": serve, "load_s": 15.0}] * busy

    monkeypatch.setattr(host_contention, "_round", fake_round)
    block = measure_contention({**DEFAULTS, "model": "QwenR1", "repeats": 1, "requests": "1,32", "spin": "false",
                                "profile": str(profile), "method": "lockstep"})
    assert block["by_batch"]["QwenR1"][1] == {1: pytest.approx(1 / 1.4, abs=1e-3), 2: 1.0}
    assert "against the profile's step model for the same batch (measured / predicted, 1 busy, 2 busy): " \
           "QwenR1 1.00/1.40 at 1, 1.00/1.40 at 32" in block["source"]
    assert "warning: with all 2 workers busy these steps are not the profile's (QwenR1 at 1: 1.40x" in capsys.readouterr().out


def test_the_grid_method_times_the_profilers_batches_with_the_other_worker_idle_busy_or_spinning(monkeypatch):
    """method=grid with probe.measure stood in for: a batch of c requests takes 0.8x its all-busy
    time alone and 0.9x beside a spinning engine, so the factors are 0.8 and the spinning engine's
    share (0.9 - 0.8) / (1 - 0.8) = 0.5."""
    from mosaic.fitting import host_contention
    calls = []

    def fake_measure(path, args, env, grid, **kw):
        calls.append((tuple(grid["batch_sizes"]), tuple(grid["context_lengths"]), tuple(grid["outputs"])))
        return {"load_time_s": 10.0, "steps": [{"cell": f"{c}x256->144", "ms": 144.0 * c * state["factor"]}
                                               for c in grid["batch_sizes"]]}

    state = {"factor": 1.0}

    def fake_grid_round(path, args, envs_, busy, grid, prompt, spin=False):
        state["factor"] = 0.9 if spin else (0.8 if busy == 1 else 1.0)
        return [fake_measure(path, args, envs_[w], grid) for w in range(1 if spin else busy)]

    monkeypatch.setattr(host_contention, "_grid_round", fake_grid_round)
    block = measure_contention({**DEFAULTS, "model": "QwenR1", "repeats": 2, "requests": "1,32"})
    assert block["by_batch"]["QwenR1"] == {1: {1: 0.8, 2: 1.0}, 32: {1: 0.8, 2: 1.0}}
    assert block["models"]["QwenR1"] == {1: 0.8, 2: 1.0} and block["step_scale"] == {1: 0.8, 2: 1.0}
    assert block["spin_weight"] == pytest.approx(0.5)
    # per repeat: 1 busy (one batch set), 2 busy (two), spinning (one): the grid of the options
    assert len(calls) == 2 * 4 and set(calls) == {((1, 32), (256,), (144,))}
    assert "method=grid" in block["source"] and "the profiler's own batches" in block["source"]
