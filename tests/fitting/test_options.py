"""The measurement tools refuse bad options in one line before any engine starts."""
import os
import shutil
import sys
from pathlib import Path

import pytest

from mosaic.core.errors import ConfigError
from mosaic.backends.vllm import probe
from mosaic.fitting import host_contention, real_engine
from mosaic.fitting.host_contention import DEFAULTS, measure_contention
from mosaic.fitting.options import grid_option
from mosaic.fitting.real_engine import TP_DEFAULTS, measure_tp
from mosaic.profiles.loader import BUNDLED_DIR
from mosaic.run.builder import CONF_DIR
from mosaic.cli.precheck import check_tool_args

CORES = len(os.sched_getaffinity(0))


def boom(*a, **k):
    raise AssertionError("an engine was started")


@pytest.fixture(autouse=True)
def no_engines(monkeypatch):
    monkeypatch.setattr(probe, "spawn_context", boom)
    monkeypatch.setattr(host_contention, "_round", boom)
    monkeypatch.setattr(probe, "measure", boom)


@pytest.mark.parametrize("change, match", [
    ({"tp": 0}, r"tp=0: must be >= 2"),
    ({"tp": "two"}, r"tp=two: not a whole number"),
    ({"tp": CORES + 1}, rf"{CORES + 1} workers need {CORES + 1} CPU cores"),
    ({"repeats": 0}, r"repeats=0: must be >= 1"),
    ({"model": "Nope"}, r"no entry for model 'Nope'"),
    ({"models": "nope"}, r"models=nope: no such registry; choose from paper, tiny"),
    ({"out": 144, "long_out": 16}, r"need 0 < out < long_out"),
    ({"device": "tpu"}, r"'tpu' is not one of auto, cpu, cuda"),
    ({"cpu_confine": "sometimes"}, r"cpu_confine must be one of start, always \(got 'sometimes'\)"),
    # the engine started (and failed) on these before
    ({"prompt": 100000}, r"prompt \+ long_out = 100144 tokens do not fit models.engine.max_model_len 2048"),
    ({"prefill_prompt": 5000}, r"prefill_prompt \+ 1 = 5001 tokens do not fit"),
])
def test_profile_tp_options(change, match):
    with pytest.raises(ConfigError, match=match):
        measure_tp({**TP_DEFAULTS, **change})


@pytest.mark.parametrize("change, match", [
    ({"repeats": -2}, r"repeats=-2: must be >= 1"),
    ({"requests": "many"}, r"requests=many: not a whole number"),
    ({"n_workers": CORES + 1}, rf"{CORES + 1} workers need {CORES + 1} CPU cores"),
    ({"profile": "/nonexistent/p.yaml"}, r"profile=/nonexistent/p.yaml: no such file"),
    ({"model": ",", "spin": False}, r"model=',' names no model"),   # was a StatisticsError after measuring
])
def test_profile_contention_options(change, match):
    with pytest.raises(ConfigError, match=match):
        measure_contention({**DEFAULTS, **change})


def test_profile_contention_checks_the_profile_file_loads_before_measuring(tmp_path):
    bad = tmp_path / "p.yaml"
    shutil.copy(BUNDLED_DIR / "tiny_cpu.yaml", bad)
    bad.write_text(bad.read_text().replace("load_time_s:", "load_time_s: -", 1))
    with pytest.raises(ConfigError, match="p.yaml"):
        measure_contention({**DEFAULTS, "profile": str(bad)})


@pytest.mark.parametrize("grid, match", [
    ({"repeats": 0}, r"grid.repeats: Input should be greater than 0"),
    ({"repeats": "abc"}, r"grid.repeats: Input should be a valid integer"),
    ({"repeats": 1, "batch_sizes": [4, 0]}, r"grid.batch_sizes.1: Input should be greater than 0"),
    ({"repeats": 1, "prefill": [[1]]}, r"grid.prefill.0.1: Field required"),
    ({"repeats": 1, "batch_size": [4]}, r"grid.batch_size: Extra inputs are not permitted"),
])
def test_grid_is_validated(grid, match):
    with pytest.raises(ConfigError, match=match):
        grid_option(grid)


def test_profile_models_checks_out_before_measuring(tmp_path):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    (tmp_path / "f").write_text("")
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("profile", overrides=[f"out={tmp_path / 'f' / 'p.yaml'}", "model=Qwen"])
    with pytest.raises(ConfigError, match="is a file, not a directory"):
        real_engine.profile_models(OmegaConf.to_container(cfg, resolve=True))


@pytest.mark.parametrize("config, args, says", [
    ("check_profile", ["repeats=0"], "Could not override 'repeats'"),
    ("profile", ["bad=1"], "Could not override 'bad'"),
    ("check_profile", ["models=nope"], "choose one of: paper, tiny"),
    # with a --config-dir every check was skipped (Hydra's own message, exit 1)
    ("profile", ["--config-dir", "/nonexistent/x", "model=Qwen"], "--config-dir /nonexistent/x: no such directory"),
    ("profile", ["--config-dir", str(CONF_DIR / "models"), "bad=1"], "Could not override 'bad'"),
])
def test_tool_config_errors_are_one_line_and_exit_2(config, args, says, capsys):
    with pytest.raises(SystemExit) as e:
        check_tool_args(CONF_DIR, config, args)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and says in err[0]


def test_tool_flags_go_to_hydra_unchecked():
    check_tool_args(CONF_DIR, "check_profile", ["--help"])   # returns: Hydra prints its help
    assert sys.argv   # nothing exited


def _profile_cfg(tmp_path, *overrides):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("profile", overrides=[f"out={tmp_path / 'p.yaml'}", "n_workers=1", "backend.options.device=cpu",
                                            *overrides])
    return OmegaConf.to_container(cfg, resolve=True)


def _replayed(monkeypatch, seen):
    """measure() replaying the committed raw rows of tiny_cpu (what a real measurement returned)."""
    import json

    from mosaic.profiles.loader import BUNDLED_DIR

    raw = json.loads((BUNDLED_DIR / "tiny_cpu.measured.json").read_text())

    def fake(path, engine_args, env, grid, on_progress=None, after=None):
        name = path.rstrip("/").rsplit("/", 1)[-1]
        seen.append(name)
        return {**raw[name], "warm": raw[name]["warm"][0], "sessions": []}

    monkeypatch.setattr(probe, "measure", fake)


def test_reprofiling_some_models_keeps_the_others_and_their_tp_blocks(tmp_path, monkeypatch):
    import json

    import yaml

    seen: list[str] = []
    _replayed(monkeypatch, seen)
    real_engine.profile_models(_profile_cfg(tmp_path, "model=[Qwen,LlamaR1]"))
    assert sorted(seen) == ["LlamaR1", "Qwen"]
    doc = yaml.safe_load((tmp_path / "p.yaml").read_text())
    assert sorted(doc["models"]) == ["LlamaR1", "Qwen"]
    # profile_tp.py's block for LlamaR1 and an older entry for Gemma, then re-profile LlamaR1 alone
    doc["models"]["LlamaR1"]["tensor_parallel"] = {"step_speedup": {2: 1.05}, "token_speedup": {2: 1.4},
                                                   "load_overhead_s": 2.0, "source": "test"}
    doc["models"]["Qwen"]["sources"] = ["older"]
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    seen.clear()
    real_engine.profile_models(_profile_cfg(tmp_path, "model='LlamaR1'"))
    assert seen == ["LlamaR1"]
    new = yaml.safe_load((tmp_path / "p.yaml").read_text())
    assert sorted(new["models"]) == ["LlamaR1", "Qwen"]
    assert new["models"]["Qwen"]["sources"] == ["older"]             # not re-measured: kept as it was
    assert new["models"]["LlamaR1"]["tensor_parallel"]["token_speedup"] == {2: 1.4}
    assert new["models"]["LlamaR1"]["sources"][0].startswith("load/unload time")
    raw = json.loads((tmp_path / "p.measured.json").read_text())   # the raw rows of both, to refit or audit
    assert sorted(raw) == ["LlamaR1", "Qwen"] and raw["Qwen"]["steps"]


def test_reprofiling_into_a_file_of_another_engine_setup_is_refused_before_measuring(tmp_path, monkeypatch):
    import yaml

    seen: list[str] = []
    _replayed(monkeypatch, seen)
    real_engine.profile_models(_profile_cfg(tmp_path, "model=Qwen"))
    doc = yaml.safe_load((tmp_path / "p.yaml").read_text())
    doc["engine"]["max_num_seqs"] = 8
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    seen.clear()
    with pytest.raises(ConfigError, match=r"out=.*other models \(Qwen\).*max_num_seqs 8 there, 64 now"):
        real_engine.profile_models(_profile_cfg(tmp_path, "model=LlamaR1"))
    assert seen == []


@pytest.mark.parametrize("spec, match", [("Nope", "Nope"), ("[]", "name a model"), ("' , '", "name a model")])
def test_profile_model_names_are_checked(tmp_path, spec, match, monkeypatch):
    _replayed(monkeypatch, [])
    with pytest.raises(ConfigError, match=match):
        real_engine.profile_models(_profile_cfg(tmp_path, f"model={spec}"))


@pytest.mark.parametrize("override, match", [
    ("session_sweep.ns=[-4,0]", r"session_sweep.ns must list session sizes, each an integer >= 1"),
    ("session_sweep.reps=0", r"session_sweep.reps must be an integer >= 1"),
    ("output.instruct.mean_tokens=-5", r"output.instruct: must be in"),
    ("output.reasoning.shape=bogus", r"output.reasoning.shape: unknown shape 'bogus'"),
    ("backend.options.kv_cache_gib=-3", r"kv_cache_gib must be an integer number of GiB >= 1 \(got -3\)"),
])
def test_profile_models_checks_outputs_sweep_and_cache_before_measuring(tmp_path, monkeypatch, override, match):
    """Each was read only after the minutes of measuring (or quietly rounded to 1 GiB)."""
    def never(*a, **k):
        raise AssertionError("an engine was started")

    monkeypatch.setattr(probe, "measure", never)
    extra = ["session_sweep.ns=[4]"] if override.startswith("session_sweep.reps") else []
    with pytest.raises(ConfigError, match=match):
        real_engine.profile_models(_profile_cfg(tmp_path, "model=all", override, *extra))


@pytest.mark.slow
def test_a_refused_tool_run_leaves_no_run_folder_behind(tmp_path):
    """Hydra made outputs/<tool>/<time>/ (an empty log, .hydra/) before the options were refused."""
    import subprocess

    root = CONF_DIR.parents[1]
    for script, arg in (("check_profile.py", "model=Nope"), ("profile_models.py", "session_sweep.ns=[-1]")):
        r = subprocess.run([sys.executable, str(root / "experiments" / script), arg], cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and r.stderr.startswith("error: "), r.stderr
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize("argv, match", [(["bogus=1"], "bogus=1: not an option of this script; give key=value with key one of"),
                                         (["model"], "model: not an option"),   # was set to '' silently
                                         (["repeats=2", "nope"], "nope: not an option")])
def test_script_arguments_outside_the_options_are_named(argv, match):
    from mosaic.fitting.options import parse_options

    with pytest.raises(ConfigError, match=match):
        parse_options(argv, TP_DEFAULTS)
    assert parse_options(["model=GLM", "repeats=2"], TP_DEFAULTS) == {**TP_DEFAULTS, "model": "GLM", "repeats": "2"}


def _script(name, *args, **env):
    import subprocess
    import sys

    from tests.cli.test_run_cli import fake_vllm_env
    root = Path(__file__).resolve().parents[2]
    return subprocess.run([sys.executable, str(root / "experiments" / name), *args], capture_output=True, text=True,
                          cwd=root, timeout=300, env=fake_vllm_env(**env))


@pytest.mark.slow
def test_an_engine_that_cannot_start_ends_profile_tp_at_once():
    """The parent waited 900 s on the engine's queue (then a queue.Empty traceback)."""
    p = _script("profile_tp.py", "repeats=1", "requests=2", "prompt=8", "out=2", "long_out=4", "prefill_requests=0",
                FAKE_VLLM_FAIL="*")
    assert p.returncode == 1, p.stderr
    assert p.stderr.splitlines()[-1].startswith("error: TP=1 on ") and "exited with code 1" in p.stderr


@pytest.mark.parametrize("name", ["profile_tp.py", "profile_contention.py"])
def test_help_describes_the_script_and_its_options(name):
    """--help was "not an option of this script", exit 2."""
    p = _script(name, "--help")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("Measure ") and "Options (key=value) and their defaults: models=tiny" in p.stdout
