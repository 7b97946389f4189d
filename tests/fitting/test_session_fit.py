"""Session-time regression T_m(N, mean, max): fitting, held-out error, the sweep, profile parsing."""
import numpy as np
import pytest

from mosaic.core.errors import ConfigError
from mosaic.profiles import LengthComponent, LengthDistribution
from mosaic.fitting.session_costs import (SessionSample, fit_coef, fit_form, select, sweep,
                                          to_yaml)
from mosaic.profiles.session_cost import features, parse_session_fit

KV, SEQS = 400_000, 256


def samples_from(coef, form, rng, noise=0.0):
    out = []
    for n in (8, 32, 128, 512, 2048):
        for mean in (300.0, 1200.0, 3000.0):
            mx, prompt = mean * rng.uniform(4, 8), rng.uniform(100, 400)
            t = float(np.dot(coef, features(form, n, mean, mx, prompt, 350, KV, SEQS)))
            out.append(SessionSample(n, mean, mx, prompt, 350, t * (1 + noise * rng.normal())))
    return out


@pytest.mark.parametrize("form, coef", [("linear", [20.0, 1e-5, 0.01, 0.05]),
                                        ("batched", [5.0, 0.012, 2e-5, 1e-8, 0.006])])
def test_fit_recovers_known_coefficients(form, coef):
    s = samples_from(coef, form, np.random.default_rng(0))
    assert fit_coef(s, form, KV, SEQS) == pytest.approx(coef, rel=1e-4, abs=1e-9)
    fit = fit_form(s, form, KV, SEQS)
    assert fit.error_max < 1e-6 and fit.n_points == len(s)
    assert fit.predict(100, 1000.0, 6000.0, 200.0, 350) == pytest.approx(
        np.dot(coef, features(form, 100, 1000.0, 6000.0, 200.0, 350, KV, SEQS)))


def test_select_prefers_the_form_that_generated_the_data():
    s = samples_from([5.0, 0.012, 2e-5, 1e-8, 0.006], "batched", np.random.default_rng(1), noise=0.02)
    best, fits = select(s, KV, SEQS)
    assert best.form == "batched" and set(fits) == {"linear", "steps", "batched"}
    assert best.error_median < 0.05 < fits["steps"].error_median


def test_held_out_needs_three_ns():
    s = [SessionSample(n, 100.0, 500.0, 100.0, 350, 1.0 + n) for n in (8, 16) for _ in range(3)]
    with pytest.raises(ConfigError, match=">= 3 distinct N"):
        fit_form(s, "linear", KV, SEQS)


def test_sweep_calls_the_measurement_function_per_n_and_draw():
    dist = LengthDistribution((LengthComponent(1.0, 400.0, 0.7),), cap=4000)
    calls = []

    def fake_engine(prompts, outputs):   # a fake measurement: 1 ms per output token + 2 s start-up
        calls.append((len(prompts), int(outputs.max())))
        return 2.0 + 1e-3 * outputs.sum()

    s = sweep(fake_engine, {"a": dist, "b": dist.scaled(2.0)}, {"a": 150.0}, (4, 16, 64), 2, {"a": 50, "b": 80},
              np.random.default_rng(0), max_tokens=2048)
    assert [c[0] for c in calls] == [4, 16, 64] * 4
    assert max(c[1] for c in calls) <= 2048 - 1
    assert {x.n_cal for x in s if x.group == "b"} == {80}
    assert all(x.wall_s == pytest.approx(2.0 + 1e-3 * x.n * x.mean, rel=1.0) for x in s)
    fit = fit_form(s, "linear", KV, SEQS)        # T = 2 + 1e-3 N mean, up to sampling noise
    assert fit.coef[0] == pytest.approx(2.0, abs=0.5) and fit.error_median < 0.2


def test_profile_entry_round_trip_and_errors():
    fit = fit_form(samples_from([20.0, 1e-5, 0.01, 0.05], "linear", np.random.default_rng(2)), "linear", KV, SEQS)
    back = parse_session_fit(to_yaml(fit), "m.session_fit")
    assert back.form == "linear" and back.coef == pytest.approx(fit.coef, rel=1e-5)
    with pytest.raises(ConfigError, match=r"m.session_fit.coef: form 'linear' takes 4 coefficients, got 2"):
        parse_session_fit(dict(to_yaml(fit), coef=[1, 2]), "m.session_fit")
    with pytest.raises(ConfigError, match="unknown form 'cubic'"):
        parse_session_fit(dict(to_yaml(fit), form="cubic"), "m.session_fit")
    with pytest.raises(ConfigError, match="m.session_fit: missing field 'kv_tokens'"):
        parse_session_fit({k: v for k, v in to_yaml(fit).items() if k != "kv_tokens"}, "m.session_fit")


def test_real_engine_sweep_path_with_a_fake_engine():
    """experiments/profile_models.py's session sweep (mosaic.fitting.real_engine) on a fake measurement function."""
    import yaml

    from mosaic.profiles.loader import BUNDLED_DIR
    from mosaic.profiles.session_cost import parse_session_fit
    from mosaic.fitting.real_engine import fit_sessions, session_samples

    shapes = yaml.safe_load((BUNDLED_DIR / "moa6_a100.yaml").read_text())["length_shapes"]
    seen = []

    def fake_engine(prompts, outputs):   # 5 s start-up, 20 ms per decode step of a 16-sequence batch
        seen.append(len(prompts))
        return 5.0 + 0.02 * max(outputs.sum() / min(len(outputs), 16), outputs.max())

    samples = session_samples(fake_engine, {"shape": "instruct", "mean_tokens": 32, "cap": 384}, shapes,
                              {"ns": [2, 4, 8, 16, 32], "reps": 2, "calibration_size": 16}, max_len=512)
    assert seen == [2, 4, 8, 16, 32] * 2 and len(samples) == 10
    entry = fit_sessions(samples, kv_capacity=20000, max_num_seqs=16, when="test")
    fit = parse_session_fit(entry, "session_fit")            # what profile_models.py writes must load
    assert fit.n_points == 10 and fit.error_median < 0.15
    assert "experiments/profile_models.py" in fit.source
