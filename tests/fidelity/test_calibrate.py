"""Calibrating a profile to the machine: the factors fitted to the check's batches, the calibrated file
a run can load, and what the run's summary records. The engine measurement is replaced by rows made
from the profile's own step model times known factors (tests/fidelity/test_profile_check.py)."""
import json
import subprocess
import sys

import pytest
import yaml

from mosaic.backends.vllm import probe
from mosaic.fidelity import calibrate as cal
from mosaic.profiles.calibration import fit_scales, predict_ms
from mosaic.profiles import load_profiles
from tests.fidelity.test_profile_check import PROFILE, _cfg, _fake_measure, use_measure
from tests.helpers import config

GRID = {"repeats": 2, "prefill": [[1, 1024], [4, 512]], "decode": [[4, 64, 65], [32, 128, 97]], "seed": 0}


def _check(monkeypatch, factors, group_factors=None, models="Qwen,Exaone", grid=GRID, split=False):
    use_measure(monkeypatch, _fake_measure(factors, group_factors=group_factors)[0])
    return cal.check_profile(_cfg(model=models, grid=grid, split=split))


def test_the_calibration_grid_is_the_one_the_command_uses():
    from mosaic.run.builder import compose
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(compose([], "calibrate_profile"), resolve=True)
    assert {k: v for k, v in cfg["grid"].items() if v or k == "seed"} == GRID and cfg["split"] is True


def test_the_per_step_decode_and_prefill_factors_are_told_apart(monkeypatch):
    """A machine whose cores do the work terms 6x slower but whose per-step overhead is only 2x
    slower (small decode batches slow down less than large ones), prefill 5x: the fit gives all
    three back; the check's one ratio lies between them."""
    check = _check(monkeypatch, {"Qwen": 1.0, "Exaone": 1.0}, {"step": 2.0, "decode": 6.0, "prefill": 5.0})
    m = check["models"]["Qwen"]
    # the second repeat runs 10% slower (the fake's spread): each factor lands between the two repeats
    assert m["scales"]["how"] == "three factors"
    for g, f in (("step", 2.0), ("decode", 6.0), ("prefill", 5.0)):
        assert f <= m["scales"][g] <= f * 1.1
    assert 2.0 < m["ratio"] < 6.6
    assert m["startup_s"] == 4.0 and m["unload_s"] == 5.0 and m["submit_ms"] == 0.3
    # the first request's 30 ms beyond its steps, as priced at this machine's speed
    assert m["warmup_s"] == pytest.approx(0.030, abs=0.01)
    # the rows are kept: the same fit again from the check's JSON alone
    assert fit_scales(json.loads(json.dumps(m["rows"])), PROFILE.models["Qwen"].cost) == m["scales"]


def test_factors_far_apart_are_kept_where_the_batches_tell_them_apart(monkeypatch):
    """The per-step cost as profiled, decode 12x and prefill 60x slower (beyond a host measured so): three
    factors, not one median 47% off the batches."""
    m = _check(monkeypatch, {"Qwen": 1.0, "Exaone": 1.0}, {"step": 1.0, "decode": 12.0, "prefill": 60.0})["models"]["Qwen"]
    assert m["scales"]["how"] == "three factors" and m["scales"]["error"] < 0.06
    for g, f in (("step", 1.0), ("decode", 12.0), ("prefill", 60.0)):
        assert f <= m["scales"][g] <= f * 1.1


def test_split_measures_each_model_once_the_longest_first_to_the_least_busy_worker(monkeypatch):
    """Each model once, on one worker; each worker's models in one process, one after another; the
    model the profile expects to take longest first, each next one to the worker with the least."""
    names = ["Qwen", "Exaone", "GLM"]
    measure, calls = _fake_measure({n: 1.5 for n in names})
    use_measure(monkeypatch, measure)
    processes = []
    each = probe.measure_models
    monkeypatch.setattr(probe, "measure_models", lambda models, env, grid, **k: processes.append(
        [path.rstrip("/").split("/")[-1] for path, _ in models]) or each(models, env, grid, **k))
    check = cal.check_profile(_cfg(model=",".join(names), grid=GRID, split=True))
    assert sorted(calls) == sorted(names)   # once each (not once per worker)
    expected = {n: probe.expected_s(PROFILE.models[n], PROFILE.engine, GRID) for n in names}
    first, second, third = sorted(names, key=lambda n: -expected[n])
    assert len(set(expected.values())) == 3 and expected[first] < expected[second] + expected[third]
    assert sorted(processes) == sorted([[first], [second, third]])   # a process per worker, its models in turn
    assert {n: list(m["workers"]) for n, m in check["models"].items()} == {first: ["0"], second: ["1"], third: ["1"]}
    assert all(m["ratio"] == pytest.approx(1.5, rel=0.06) for m in check["models"].values())
    with pytest.raises(cal.ConfigError, match="split must be true or false"):
        cal.check_profile(_cfg(model="Qwen", grid=GRID, split="yes"))


def test_without_expected_times_the_models_are_dealt_in_turn(monkeypatch):
    measure, _ = _fake_measure({"Qwen": 1.0, "Exaone": 1.0, "GLM": 1.0})
    use_measure(monkeypatch, measure)
    envs = __import__("mosaic.backends.vllm.backend", fromlist=["device_env"]).device_env(2, "cpu", 1)
    out = probe.measure_split({n: (f"/m/{n}", {}) for n in ("Qwen", "Exaone", "GLM")}, envs, GRID)
    assert list(out) == ["Qwen", "Exaone", "GLM"]
    assert {n: {r["worker"] for r in m["steps"]} for n, m in out.items()} == {"Qwen": {0}, "Exaone": {1}, "GLM": {0}}


def test_batches_of_one_kind_give_one_factor():
    rows = [{"steps": 100, "seqs": 800, "tokens": 800, "ctx": 80000, "attn": 0.0, "ms": 0.0}]
    cost = PROFILE.models["Qwen"].cost
    rows[0]["ms"] = 2.0 * predict_ms(cost, rows[0])
    assert fit_scales(rows, cost) == {"step": pytest.approx(2.0), "decode": pytest.approx(2.0),
                                      "prefill": pytest.approx(2.0), "how": "one factor", "error": pytest.approx(0)}
    with pytest.raises(ValueError, match="no measured batches"):
        fit_scales([], cost)


def test_the_calibrated_profile_scales_costs_and_takes_the_measured_times(monkeypatch, tmp_path):
    check = _check(monkeypatch, {"Qwen": 2.0, "Exaone": 0.5})
    check_file = tmp_path / "check.json"
    check_file.write_text(json.dumps(check))   # a check's JSON is all a calibration needs
    out = cal.calibrated_from(json.loads(check_file.read_text()))
    target = tmp_path / "mine.yaml"
    cal.write_calibrated(out, target)
    got = load_profiles(str(target))
    base = PROFILE
    for name, f in (("Qwen", 2.0), ("Exaone", 0.5)):
        for k, v in base.models[name].cost.items():
            assert f <= got.models[name].cost[k] / v <= f * 1.1 or v == 0
        assert got.models[name].load_time_s == 20.0 and got.models[name].unload_time_s == 5.0
        assert got.models[name].kv_capacity == base.models[name].kv_capacity   # not what a check measures
    assert got.models["GLM"] == base.models["GLM"]   # not checked: as it was
    assert got.engine.worker_startup_s == 4.0 and got.engine.submit_ms == 0.3
    rec = got.calibration
    assert rec["base"] == "mosaic/profiles/data/tiny_cpu.yaml" and rec["kept"] == sorted(set(base.models) - {"Qwen", "Exaone"})
    assert rec["models"]["Qwen"]["how"] == "three factors" and 2.0 <= rec["models"]["Qwen"]["decode"] <= 2.2
    assert "calibrated by experiments/calibrate_profile.py" in yaml.safe_load(target.read_text())["models"]["Qwen"]["sources"][0]
    # calibrating a calibrated profile names the profile it all came from
    again = dict(check, profile=str(target))
    assert cal.calibrated_from(again)["calibration"]["base"] == "mosaic/profiles/data/tiny_cpu.yaml"


def test_a_run_on_the_calibrated_profile_records_it_and_runs_at_its_speed(monkeypatch, tmp_path):
    from mosaic.run.app import run

    names = sorted(PROFILE.models)
    check = _check(monkeypatch, {n: 2.0 for n in names}, models=",".join(names),
                   grid={**GRID, "prefill": [], "decode": [[16, 64, 129]]})
    target = tmp_path / "slow.yaml"
    cal.write_calibrated(cal.calibrated_from(check), target)
    common = ["workload=smoke", "workload.n_queries=8", "cluster=cpu2", "aggregation.placement=scheduled",
              "scheduler=round_robin"]
    base, slow = (run(config(*common, f"workload.profiles={p}")) for p in ("tiny_cpu", target))
    assert base.summary["profile_calibration"] is None
    rec = slow.summary["profile_calibration"]["workload"]
    assert set(rec["models"]) == set(names) and rec["base"] == "mosaic/profiles/data/tiny_cpu.yaml"
    # the same plan and lengths on a machine 2.1x as slow per step (the fake's two repeats), loads at 20 s
    serving = lambda out: [s.run_end_s - s.run_start_s for s in out.result.expert.trace.sessions]
    loads = lambda out: [s.load_end_s - s.load_start_s for s in out.result.expert.trace.sessions]
    assert [s.model for s in slow.result.expert.trace.sessions] == [s.model for s in base.result.expert.trace.sessions]
    for fast_s, slow_s in zip(serving(base), serving(slow)):
        # 2.1x a step; more where the other worker's longer session now overlaps it (host contention)
        assert 2.0 * fast_s < slow_s < 2.6 * fast_s
    # the measured 20 s (both workers loading at once, as the check measured it), less where one loads alone
    assert all(20.0 * 0.87 <= x <= 20.0 + 1e-6 for x in loads(slow)) and max(loads(slow)) == pytest.approx(20.0)


def test_the_command_writes_the_profile_and_refuses_a_bad_target(tmp_path):
    p = subprocess.run([sys.executable, "experiments/calibrate_profile.py", f"calibrated={tmp_path / 'x.txt'}"],
                       capture_output=True, text=True, cwd=cal.ROOT, timeout=120)
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
    assert "calibrated=" in p.stderr and ".yaml" in p.stderr


def test_the_calibrated_path_defaults_beside_the_outputs():
    assert cal.calibrated_path({"profile": "mosaic/profiles/data/tiny_cpu_confined.yaml", "calibrated": None}) == \
        cal.ROOT / "outputs" / "profiles" / "tiny_cpu_confined.calibrated.yaml"


def test_a_factor_the_batches_push_to_zero_stays_at_its_bound_and_the_others_still_fit():
    """A host whose per-step cost is far below the rest's slow-down: the unbounded fit puts the
    step factor at zero. It was refused, for one factor ~50% off the batches; now the step factor
    stays MAX_FIT_DEPARTURE below the median and decode and prefill still explain them."""
    from mosaic.profiles.calibration import MAX_FIT_DEPARTURE, scaled_cost

    cost = PROFILE.models["Qwen"].cost
    shapes = [  # two prefills and two decode windows, as the calibration's grid times them
        {"steps": 1, "seqs": 1, "tokens": 1024, "ctx": 0, "attn": 1024 ** 2},
        {"steps": 1, "seqs": 4, "tokens": 2048, "ctx": 0, "attn": 4 * 512 ** 2},
        {"steps": 65, "seqs": 260, "tokens": 260, "ctx": 4 * 65 * 96, "attn": 4 * 64 ** 2},
        {"steps": 97, "seqs": 3104, "tokens": 3104, "ctx": 32 * 97 * 176, "attn": 32 * 128 ** 2}]
    truth = {"step": 0.0, "decode": 4.0, "prefill": 36.0}
    rows = [{**r, "ms": predict_ms(scaled_cost(cost, truth), r) * (1 + 0.01 * rep)} for r in shapes for rep in (0, 1)]
    got = fit_scales(rows, cost)
    ratios = sorted(r["ms"] / predict_ms(cost, r) for r in rows)
    median = (ratios[3] + ratios[4]) / 2
    one = sorted(abs(median / x - 1) for x in ratios)
    assert (one[3] + one[4]) / 2 > 1.0   # one factor: more than 100% off at the median batch
    assert got["how"] == "three factors" and got["error"] < 0.05, got
    assert got["step"] == pytest.approx(median / MAX_FIT_DEPARTURE)
    assert got["prefill"] == pytest.approx(36.0, rel=0.02) and 2.0 < got["decode"] < 4.0   # decode takes up the floor
