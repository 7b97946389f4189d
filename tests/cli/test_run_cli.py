"""The main command as a user runs it."""
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hydra.errors import MissingConfigException

from mosaic.run.builder import compose
from mosaic.cli.job import run_job
from mosaic.backends.vllm.procgroup import pid_alive

ROOT = Path(__file__).resolve().parents[2]
KEYS = {"scheduler", "backend", "workload", "seed", "n_queries", "n_expert_requests", "expert_stage_s",
        "aggregator_stage_s", "end_to_end_s", "skip_rate", "accuracy", "accuracy_always_aggregate",
        "workers", "solver"}


def cli(*args, cwd=ROOT, env=None):
    return subprocess.run([sys.executable, str(ROOT / "experiments" / "run.py"), *args],
                          capture_output=True, text=True, cwd=cwd, timeout=300, env=env)


def job(directory, *overrides):
    """The CLI's job, in this process: what `experiments/run.py OVERRIDES hydra.run.dir=DIR` does
    after Hydra has composed the config. Returns the exit code."""
    return run_job(compose(overrides), directory, list(overrides))


def test_writes_summary_plan_and_trace(tmp_path, capsys):
    assert job(tmp_path, "workload=synth_small") == 0
    assert "end to end" in capsys.readouterr().out
    assert "end to end" in (tmp_path / "run.log").read_text()    # the job log keeps the summary
    s = json.loads((tmp_path / "summary.json").read_text())
    assert KEYS <= set(s)
    assert s["scheduler"] == "engine_aware" and s["backend"] == "sim" and s["workload"] == "synth_small"
    assert s["end_to_end_s"] == pytest.approx(s["expert_stage_s"] + s["aggregator_stage_s"])
    assert {"status", "solve_s", "objective", "bound", "gap"} <= set(s["solver"])  # keys may be added
    for w in s["workers"]:
        assert set(w) == {"id", "busy_s", "idle_s", "sessions", "expert_sessions"}
        assert 0 <= w["expert_sessions"] <= len(w["sessions"])
        assert w["busy_s"] + w["idle_s"] == pytest.approx(s["end_to_end_s"])
    plan = json.loads((tmp_path / "plan.json").read_text())
    ids = [r for w in plan["expert"]["workers"] for sess in w["sessions"] for r in sess["request_ids"]]
    assert len(ids) == len(set(ids)) == s["n_expert_requests"]
    rows = list(csv.DictReader(open(tmp_path / "trace.csv")))
    assert len(rows) == s["n_expert_requests"] + s["n_aggregator_requests"]
    assert all(float(r["start_s"]) <= float(r["first_token_s"]) <= float(r["finish_s"]) for r in rows)


def test_summary_records_provenance(tmp_path):
    import subprocess as sp

    assert job(tmp_path, "workload=synth_small", "seed=4", "cluster.n_workers=3") == 0
    p = json.loads((tmp_path / "summary.json").read_text())["provenance"]
    assert p["overrides"] == ["workload=synth_small", "seed=4", "cluster.n_workers=3"]
    assert p["config"]["seed"] == 4 and p["config"]["cluster"]["n_workers"] == 3
    assert p["config"]["workload"]["name"] == "synth_small"
    head = sp.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert p["git"] is None or p["git"]["commit"] == head    # None: not a git checkout
    assert p["versions"]["numpy"] == np.__version__ and p["versions"]["python"].count(".") == 2
    assert 0 < p["wall_s"] < 300 and p["started_at"][:4].isdigit()


def test_baseline_has_no_solver(tmp_path):
    assert job(tmp_path, "workload=synth_small", "scheduler=fifo") == 0
    assert json.loads((tmp_path / "summary.json").read_text())["solver"] is None


@pytest.mark.parametrize("args, message", [
    (["scheduler.name=nope"], "unknown scheduler 'nope'; choose one of"),
    (["cluster.n_workers=0"], "cluster.n_workers must be an integer >= 1"),
    (["cluster.memory_gib=20"], "raise cluster.memory_gib"),
    (["seed=1", "seed=2"], "seed is set twice on the command line (seed=1 and seed=2); keep one"),
])
def test_bad_config_exits_2_with_one_line(tmp_path, capsys, args, message):
    assert job(tmp_path, "workload=synth_small", *args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert json.loads((tmp_path / "error.json").read_text())["exit_code"] == 2
    assert not (tmp_path / "summary.json").exists()


def test_unknown_scheduler_group_option_lists_choices():
    with pytest.raises(MissingConfigException) as e:
        compose(["scheduler=nope"])
    assert "scheduler" in str(e.value) and "round_robin" in str(e.value)


@pytest.mark.slow
def test_runs_without_shared_data_from_another_directory(tmp_path):
    # The one subprocess smoke test of the command itself: the embedded default needs nothing
    # outside the package, so run it from an empty directory; a bad value, and an unknown group
    # option (Hydra's own error), exit 2 on one line.
    p = cli("workload=synth_small", f"hydra.run.dir={tmp_path / 'out'}", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "end to end" in p.stdout and (tmp_path / "out" / "summary.json").is_file()
    p = cli("workload=synth_small", "cluster.n_workers=0", f"hydra.run.dir={tmp_path / 'bad'}", cwd=tmp_path)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert [ln for ln in p.stderr.splitlines() if ln.strip()] == [
        "error: cluster.n_workers must be an integer >= 1 (got 0); set it to the number of GPU workers"]
    # Hydra's own config error (checked before Hydra runs: mosaic/cli/precheck.py, hydra_prepared).
    p = cli("scheduler=nope", f"hydra.run.dir={tmp_path / 'nope'}", cwd=tmp_path)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert [ln for ln in p.stderr.splitlines() if ln.strip()] == [
        "error: In 'config': Could not find 'scheduler/nope'; choose one of: data_parallel, engine_aware, fifo, "
        "ilp, least_loaded, round_robin"]
    assert json.loads((tmp_path / "nope" / "error.json").read_text())["stage"] == "config"
    # joblib refuses n_jobs=0 only once the sweep has started, with a traceback
    p = cli("-m", "workload=synth_small", "hydra/launcher=joblib", "hydra.launcher.n_jobs=0",
            f"hydra.sweep.dir={tmp_path / 'sw'}", cwd=tmp_path)
    assert p.returncode == 2 and p.stderr.strip().startswith("error: hydra.launcher.n_jobs=0 runs no job"), p.stderr
    # a sweep of no job (an empty range) ran nothing and exited 0
    p = cli("-m", "workload=synth_small", "seed=range(0,0)", "scheduler=ilp,fifo", f"hydra.sweep.dir={tmp_path / 'sw0'}",
            cwd=tmp_path)
    assert p.returncode == 2 and p.stderr.strip() == (
        "error: seed=range(0,0) gives no value, so the sweep has no job: give at least one value (e.g. range(0,3) "
        "runs 0, 1 and 2)"), p.stderr
    assert not (tmp_path / "sw0").exists()
    # a range of step 0 was Python's ValueError traceback; a glob matching nothing ran no job, exit 0
    for given, said in (("seed=range(0,2,0)", "error: seed=range(0,2,0): range() arg 3 must not be zero; give "
                                              "range(start,stop,step) a step other than 0"),
                        ("scheduler=glob(zz*)", "error: scheduler=glob(zz*) matches no option of its config group, "
                                                "so the sweep has no job: give a pattern that matches one")):
        p = cli("-m", "workload=synth_small", given, f"hydra.sweep.dir={tmp_path / 'sw2'}", cwd=tmp_path)
        assert p.returncode == 2 and p.stderr.strip().startswith(said) and "Traceback" not in p.stderr, p.stderr
        assert not (tmp_path / "sw2").exists()
    # a launcher or sweeper on a single run was ignored: it has no sweep
    for given in ("hydra/launcher=joblib", "hydra/sweeper=basic"):
        p = cli("workload=synth_small", given, f"hydra.run.dir={tmp_path / 'one'}", cwd=tmp_path)
        assert p.returncode == 2 and p.stderr.strip().startswith(f"error: {given} sets how a sweep runs its jobs"), p.stderr
        assert not (tmp_path / "one" / "summary.json").exists()
    # a key below a null setting was OmegaConf's AssertionError traceback
    p = cli("-m", "workload=synth_small", "hydra.sweeper.params.seed=3", f"hydra.sweep.dir={tmp_path / 'sw1'}",
            cwd=tmp_path)
    assert p.returncode == 2 and p.stderr.strip() == (
        "error: hydra.sweeper.params.seed=3: hydra.sweeper.params is null, so it has no key seed; set "
        "hydra.sweeper.params as a whole (e.g. 'hydra.sweeper.params={seed: ...}')"), p.stderr


# ---------------------------------------------------------------- failures and interruptions

FAKE_VLLM = str(ROOT / "tests" / "fake_vllm")
# backend=vllm on the fake engine (tests/fake_vllm): two CPU workers, model names only (no files).
VLLM_ARGS = ("backend=vllm", "models=paper", "backend.options.device=cpu", "workload=smoke", "cluster=cpu2",
             "scheduler=fifo", "aggregation.placement=scheduled")


def env_with_path(first: str, **extra):
    """This process's environment with `first` ahead of PYTHONPATH, for a child process."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [first, os.environ.get("PYTHONPATH")])),
            **extra}


def hub_cache(root: Path, repos) -> Path:
    """A Hugging Face cache folder holding a config.json for each Hub id, as `hf download` leaves
    one: what the vLLM backend checks before it starts an engine (mosaic/backends/vllm/models.py)."""
    for repo in repos:
        d = root / ("models--" + repo.replace("/", "--"))
        (d / "snapshots" / "0").mkdir(parents=True, exist_ok=True)
        (d / "snapshots" / "0" / "config.json").write_text("{}")
        (d / "refs").mkdir(exist_ok=True)
        (d / "refs" / "main").write_text("0")
    return root


_PAPER_CACHE: list[Path] = []


def fake_vllm_env(**extra):
    """The fake engine (tests/fake_vllm) on the path, and models=paper's six experts in a Hugging Face
    cache of their own: the fake engine reads no files, but the backend refuses a Hub model this
    machine has not downloaded."""
    if not _PAPER_CACHE:
        import tempfile

        import yaml

        paper = yaml.safe_load((ROOT / "mosaic" / "conf" / "models" / "paper.yaml").read_text())
        _PAPER_CACHE.append(hub_cache(Path(tempfile.mkdtemp(prefix="hub_cache_")),
                                      [m["hf_id"] for m in paper["models"].values()]))
    return env_with_path(FAKE_VLLM, HF_HUB_CACHE=str(_PAPER_CACHE[0]), **extra)


def test_vllm_not_installed_fails_up_front(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)   # what find_spec reports as not installed
    t0 = time.monotonic()
    assert job(tmp_path, "backend=vllm", "models=tiny", "workload=smoke", "cluster=cpu2") == 2
    err = capsys.readouterr().err
    assert "vLLM is not installed" in err and "bash scripts/install_vllm_cpu.sh" in err
    assert "pip install -e '.[vllm]'" in err and "Traceback" not in err
    assert not (tmp_path / "summary.json").exists()  # nothing was run
    assert json.loads((tmp_path / "error.json").read_text())["exit_code"] == 2
    assert time.monotonic() - t0 < 60


@pytest.mark.slow
def test_a_hub_model_this_machine_cannot_get_is_refused_before_any_engine(tmp_path):
    """An offline machine without the model in its cache: every engine retried the download and each
    request failed (measured: 116 s, all 192 failed, exit 1); now one line, exit 2."""
    env = env_with_path(FAKE_VLLM, HF_HUB_CACHE=str(tmp_path / "empty_cache"), HF_HUB_OFFLINE="1")
    t0 = time.monotonic()
    p = cli(*VLLM_ARGS, f"hydra.run.dir={tmp_path / 'run'}", env=env)
    assert p.returncode == 2, p.stderr
    line = p.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    assert line.startswith("error: models=paper.LlamaR1: deepseek-ai/DeepSeek-R1-Distill-Llama-8B is not in the "
                           "local Hugging Face cache and HF_HUB_OFFLINE is set"), line
    assert "models.models.LlamaR1.path" in line
    assert not (tmp_path / "run" / "summary.json").exists()
    assert json.loads((tmp_path / "run" / "error.json").read_text())["exit_code"] == 2
    assert time.monotonic() - t0 < 60


@pytest.mark.slow
def test_real_engines_run_in_a_joblib_sweep(tmp_path):
    """A job of Hydra's joblib launcher runs in a loky worker, whose global start method ("loky")
    each spawned engine worker tried to set and could not find: every worker died at start, all
    requests failed (exit 1). experiments/reproduce.py's sweeps use that launcher."""
    p = cli("-m", "hydra/launcher=joblib", *VLLM_ARGS, "seed=0,1", f"hydra.sweep.dir={tmp_path}", env=fake_vllm_env())
    assert p.returncode == 0, p.stderr[-3000:]
    for seed in (0, 1):
        s = json.loads(next(tmp_path.glob(f"*seed={seed}*/summary.json")).read_text())
        assert s["n_failed_requests"] == 0 and s["n_expert_requests"] > 0
    assert "cannot find context" not in p.stderr


@pytest.mark.slow
def test_every_request_failed_exits_1(tmp_path):
    p = cli(*VLLM_ARGS, f"hydra.run.dir={tmp_path}", env=fake_vllm_env(FAKE_VLLM_FAIL="*"))
    assert p.returncode == 1, p.stderr
    s = json.loads((tmp_path / "summary.json").read_text())  # outputs kept for inspection
    n = s["n_expert_requests"] + s["n_aggregator_requests"]
    assert s["n_failed_requests"] == n > 0
    assert f"error: all {n} requests failed; first error: " in p.stderr
    assert "fake engine refuses to start" in s["first_request_error"]
    assert "all" in json.loads((tmp_path / "error.json").read_text())["error"]


@pytest.mark.slow
def test_partial_failure_is_printed_and_counted(tmp_path):
    (tmp_path / "error.json").write_text("{}")  # a stale record from an earlier failed run here
    p = cli(*VLLM_ARGS, f"hydra.run.dir={tmp_path}", env=fake_vllm_env(FAKE_VLLM_FAIL="Llama"))
    assert p.returncode == 0, p.stderr
    s = json.loads((tmp_path / "summary.json").read_text())
    n = s["n_expert_requests"] + s["n_aggregator_requests"]
    assert 0 < s["n_failed_requests"] < n
    assert f"warning: {s['n_failed_requests']} of {n} requests failed" in p.stderr
    assert "LlamaR1" in s["first_request_error"] and "LlamaR1" in p.stderr
    assert not (tmp_path / "error.json").exists()


def hung_run(tmp_path, *args, wait_s: float = 120, **popen):
    """A fake-engine run on two workers whose engines never finish a request, once both are up:
    (the process, the pids of the workers and their engines)."""
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    run = subprocess.Popen([sys.executable, str(ROOT / "experiments" / "run.py"), *VLLM_ARGS, *args,
                            f"hydra.run.dir={tmp_path / 'out'}"],
                           cwd=ROOT, env=fake_vllm_env(FAKE_VLLM_HANG_DIR=str(pid_dir)),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
    deadline = time.monotonic() + wait_s
    while len(list(pid_dir.glob("*.json"))) < 2:  # both workers have an engine up
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()
        time.sleep(0.2)
    return run, [p for f in pid_dir.glob("*.json") for p in json.loads(f.read_text()).values()]


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGINT, -signal.SIGINT)])
def test_killed_run_leaves_no_engine_behind(tmp_path, sig, code):
    # SIGINT as a terminal gives it: a runner started in the background (`cmd &` in a script) ignores
    # SIGINT, its children inherit that, and Python then keeps ignoring it.
    run, pids = hung_run(tmp_path, "backend.options.kill_grace_s=2",
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    run.send_signal(sig)
    _, err = run.communicate(timeout=60)
    assert run.returncode == code, err
    assert not [p for p in pids if pid_alive(p)], "a worker or its engine outlived the run"
    assert "error: interrupted by" in err and "Traceback" not in err, err
    assert json.loads((tmp_path / "out" / "error.json").read_text())["exit_code"] in (130, 143, 129)
    assert not list((tmp_path / "out").glob(".*.tmp-*")), "a temporary output file was left behind"


@pytest.mark.slow   # a private Ray starts
def test_sigterm_on_a_ray_run_is_exit_143_with_error_json(tmp_path):
    """ray.init put its own SIGTERM handler in (exit 15, Ray's crash dump on stderr), and Ray's wait
    turns the run's SIGTERM exception into SystemExit(1) (exit 1, no error.json)."""
    pytest.importorskip("ray")
    run, pids = hung_run(tmp_path, "backend.options.launcher=ray", "backend.options.ray_address=local", wait_s=180)
    run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 143, err
    assert err.splitlines()[-1] == "error: interrupted by SIGTERM; no worker or engine process was left running", err
    assert json.loads((tmp_path / "out" / "error.json").read_text())["exit_code"] == 143
    time.sleep(2)
    assert not [p for p in pids if pid_alive(p)], "a worker or its engine outlived the run"


@pytest.mark.slow
def test_a_reused_run_directory_holds_only_the_latest_runs_files(tmp_path):
    out = tmp_path / "out"
    for _ in range(2):
        p = cli("workload=smoke", f"hydra.run.dir={out}")
        assert p.returncode == 0, p.stderr
    log = (out / "run.log").read_text()
    assert log.count("end to end") == 1, log    # the job log is this run's, not appended to
    # Refused before Hydra runs: the earlier run's config and log would describe another run.
    p = cli("workload=smoke", "scheduler=bogus", f"hydra.run.dir={out}")
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
    assert sorted(f.name for f in out.iterdir()) == ["error.json"]


@pytest.mark.parametrize("bad, multirun", [("seed=0,", True), ("seed=[1", False)])
def test_an_override_the_grammar_rejects_is_named(tmp_path, bad, multirun):
    """Hydra's parser says only which token it expected ("mismatched input '<EOF>'"), not where."""
    where = f"hydra.sweep.dir={tmp_path / 'sw'}" if multirun else f"hydra.run.dir={tmp_path / 'out'}"
    p = cli(*(["-m"] if multirun else []), bad, "workload=smoke", where)
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
    assert p.stderr.startswith(f"error: {bad} is not a valid setting ("), p.stderr
    assert not (tmp_path / "sw").exists()


def test_a_setting_twice_in_a_sweep_is_refused_before_any_job(tmp_path):
    p = cli("-m", "seed=0,1", "seed=2", "workload=smoke", f"hydra.sweep.dir={tmp_path / 'sw'}")
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip() == "error: seed is set twice on the command line (seed=0,1 and seed=2); keep one"
    assert not (tmp_path / "sw").exists()


@pytest.mark.slow
@pytest.mark.parametrize("bad, said", [
    ("+foo=1", "unknown setting(s) foo"), ("scheduler.mip_gap=nan", "scheduler.mip_gap must be a relative gap"),
    ("seed=-1", "seed must be an integer >= 0")])
def test_a_bad_setting_every_sweep_job_shares_is_refused_before_any_job(tmp_path, bad, said):
    """Each job failed with it in turn (exit 1), where a single run exits 2 before anything runs."""
    p = cli("-m", "workload=smoke", "scheduler=round_robin,ilp", bad, f"hydra.sweep.dir={tmp_path / 'sw'}")
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and said in p.stderr, p.stderr
    assert "(2 of 2 jobs fail; nothing was run)" in p.stderr and not (tmp_path / "sw").exists()


@pytest.mark.slow
@pytest.mark.parametrize("bad, said", [
    ("cluster.n_workers=0,4", "cluster.n_workers must be an integer >= 1"),
    ("cluster.memory_gib=0,80", "cluster.memory_gib must be > 0"),
    ("workload.k=0,2", "workload.k must be a finite number >= 1"),
    ("topology=dense cluster.n_workers=1,4", "the graph's 3 models (Qwen, Gemma, LlamaR1) stay loaded")])
def test_a_value_out_of_range_in_one_sweep_job_is_refused_before_any_job(tmp_path, bad, said):
    """The other job ran and the sweep exited 1: these were checked only when a job built its run."""
    p = cli("-m", "workload=smoke", *bad.split(), f"hydra.sweep.dir={tmp_path / 'sw'}")
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and said in p.stderr, p.stderr
    assert "(nothing was run)" in p.stderr and not (tmp_path / "sw").exists()


@pytest.mark.slow
@pytest.mark.parametrize("bad, said, failing", [
    ("workload=synth_small cluster.memory_gib=10,80 seed=0,1", "model Gemma needs 30.8 GiB of GPU memory",
     "2 of 4 jobs fail"),
    ("workload=synth_small workload.k=2,9", "workload.k must be between 1 and 6 (got 9)", None),
    ("workload=synth_small cluster.n_workers=1,4 cluster.memory_gib=20", "model Gemma needs", "2 of 2 jobs fail"),
    # an agent graph's placement by a scheduler that leaves a model out: the ilp job ran first, and
    # the data_parallel one failed at its placement
    ("workload=smoke cluster=cpu2 cluster.n_workers=4 topology=tree topology.placement=scheduler "
     "scheduler=ilp,data_parallel", "scheduler data_parallel placed no worker for Gemma, LlamaR1", None)])
def test_what_a_built_run_refuses_in_one_sweep_job_is_refused_before_any_job(tmp_path, bad, said, failing):
    """A model that fits no worker, workload.k above the source's experts: the sweep ran its other
    jobs and exited 1 (the memory one only in its job's expert stage); each job is now built first.
    Jobs that differ in their seed alone build once, and each is still counted."""
    p = cli("-m", *bad.split(), f"hydra.sweep.dir={tmp_path / 'sw'}")
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and said in p.stderr, p.stderr
    assert f"({failing}; nothing was run)" in p.stderr if failing else "(nothing was run)" in p.stderr
    assert "Traceback" not in p.stderr and not (tmp_path / "sw").exists()


@pytest.mark.slow
def test_a_model_that_fits_no_worker_is_refused_when_the_run_is_built(tmp_path):
    """Its stage's planner refused it, after the stages before it had run (an aggregator that fits no
    worker: after the whole expert stage)."""
    p = cli("workload=synth_small", "cluster.memory_gib=19", f"hydra.run.dir={tmp_path}")
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip() == (
        "error: model Gemma needs 30.8 GiB of GPU memory ((weights 17.21 GiB + a 32768-token KV cache of 10.5 GiB) "
        "/ gpu_memory_utilization 0.9), but no worker has that much (nor do LlamaR1, Exaone): raise "
        "cluster.memory_gib (now 19.0) or drop the model")
    assert json.loads((tmp_path / "error.json").read_text())["stage"] == "build"


@pytest.mark.parametrize("flags, said", [
    (("-m", "--cfg", "job"), "--multirun and --cfg are two ways to run"),
    (("--info", "all", "--cfg", "job"), "--cfg and --info are two ways to run"),
    (("--shell-completion",), "--shell-completion needs what to do: install=bash")])
def test_hydra_mode_flags_that_cannot_go_together_are_one_line(tmp_path, flags, said):
    """Hydra's ValueError traceback, exit 1, before."""
    p = cli(*flags, "workload=smoke", cwd=tmp_path)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and said in p.stderr, p.stderr
    assert not any(tmp_path.iterdir())


@pytest.mark.slow   # a second and a half or more
def test_a_setting_one_swept_group_option_lacks_names_the_job(tmp_path):
    """It named no job: the config was composed with the swept groups at their defaults."""
    p = cli("-m", "workload=smoke", "backend=vllm,sim", "backend.options.device=cpu", f"hydra.sweep.dir={tmp_path / 's'}")
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
    assert p.stderr.startswith("error: sweep job workload=smoke backend=sim backend.options.device=cpu: "
                               "backend.options.device: backend.options has no entry device to change; add it with "
                               "+backend.options.device=...\n"), p.stderr
    assert not (tmp_path / "s").exists()


@pytest.mark.slow
def test_a_sweep_into_a_single_runs_folder_says_so(tmp_path):
    """It said the folder held "1 run(s) of an earlier sweep"."""
    assert job(tmp_path / "one", "workload=smoke") == 0
    p = cli("-m", "workload=smoke", "seed=0,1", f"hydra.sweep.dir={tmp_path / 'one'}")
    assert p.returncode == 2 and p.stderr.strip() == (
        f"error: sweep directory {tmp_path / 'one'} is a single run's folder (its summary.json or error.json); "
        "choose a new hydra.sweep.dir for the sweep"), p.stderr


def test_a_run_folder_given_to_a_sweep_is_refused(tmp_path):
    """Hydra ignored it: the sweep wrote into ./multirun/<date> of the working directory. (With
    hydra.sweep.dir given too, the sweep goes there, as asked.)"""
    p = cli("-m", "workload=smoke", "seed=0", f"hydra.run.dir={tmp_path / 'r'}", cwd=tmp_path)
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
    assert "sets a single run's folder, and a sweep (-m, `mosaic sweep`) ignores it: set hydra.sweep.dir" in p.stderr
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_config_dir_and_config_path_are_checked_like_the_rest(tmp_path):
    mine = tmp_path / "mine" / "scheduler"
    mine.mkdir(parents=True)
    (mine / "rr_again.yaml").write_text("defaults:\n  - round_robin\n  - _self_\n")
    (mine / "broken.yaml").write_text("name: x\n  bad: [\n")
    out = tmp_path / "out"
    for args, needle in [(["--config-dir", str(tmp_path / "nope")], "--config-dir"),
                         (["--config-path", str(tmp_path / "nope")], "--config-path"),
                         # an option the added folder does not hold: the choices list its own too
                         (["--config-dir", str(tmp_path / "mine"), "scheduler=nope"], "rr_again"),
                         # a file of the added folder that is not YAML: named with its line
                         (["--config-dir", str(tmp_path / "mine"), "scheduler=broken"], "broken.yaml\", line 2")]:
        p = cli(*args, "workload=smoke", f"hydra.run.dir={out}")
        assert p.returncode == 2 and p.stderr.count("\n") == 1 and needle in p.stderr, (args, p.stderr)
        assert json.loads((out / "error.json").read_text())["exit_code"] == 2
    p = cli("--config-dir", str(tmp_path / "mine"), "scheduler=rr_again", "workload=smoke", f"hydra.run.dir={out}")
    assert p.returncode == 0, p.stderr
    assert json.loads((out / "summary.json").read_text())["scheduler"] == "round_robin"


@pytest.mark.slow
def test_an_empty_or_overlong_run_directory_is_refused_on_one_line(tmp_path):
    for args, needle in [(["workload=smoke", "hydra.run.dir="], "hydra.run.dir is empty"),
                         (["-m", "workload=smoke", "seed=0,1", "hydra.sweep.dir="], "hydra.sweep.dir is empty"),
                         (["workload=smoke", f"hydra.run.dir={tmp_path / ('x' * 300)}"], "File name too long")]:
        p = cli(*args, cwd=tmp_path)
        assert p.returncode == 2 and p.stderr.count("\n") == 1 and needle in p.stderr, (args, p.stderr)
    assert list(tmp_path.iterdir()) == []    # nothing written into the working directory


@pytest.mark.slow
def test_glob_sweeps_run_and_overlong_job_folders_are_refused_up_front(tmp_path):
    # glob(...) was refused with "ConfigLoader is not set"; a 300-character value made Hydra's
    # job folder name fail with a traceback after the check had passed
    p = cli("-m", "aggregation=glob(tau*)", "workload=smoke", "workload.n_queries=4", f"hydra.sweep.dir={tmp_path / 'g'}")
    assert p.returncode == 0, p.stderr
    assert len(list((tmp_path / "g").rglob("summary.json"))) == 2
    p = cli("-m", "workload=smoke", f"aggregation.name={'x' * 300},b", f"hydra.sweep.dir={tmp_path / 'l'}")
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "longer than a file name may be" in p.stderr, p.stderr
    assert not (tmp_path / "l").exists()


@pytest.mark.slow
def test_a_misspelt_setting_gets_the_nearest_one_not_hydras_plus_advice(tmp_path):
    """Hydra said 'To append to your config use +schedular=ilp', which the run then refuses."""
    for args, said in [(["schedular=ilp"], "schedular is not a setting (did you mean scheduler?)"),
                       (["scheduler.nme=ilp"], "scheduler.nme is not a setting (did you mean scheduler.name?)"),
                       (["-m", "schedular=ilp,fifo", f"hydra.sweep.dir={tmp_path / 'sw'}"],
                        "sweep job schedular=ilp: schedular is not a setting (did you mean scheduler?)")]:
        p = cli(*args, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
        assert p.returncode == 2 and p.stderr.count("\n") == 1 and said in p.stderr and "+" not in p.stderr, p.stderr


def test_a_folder_in_the_way_of_an_output_is_named(tmp_path):
    """Was 'run directory D is not a writable directory (... Is a directory)' for a writable D, and
    its lock file stayed."""
    (tmp_path / "run" / "trace.csv").mkdir(parents=True)
    p = cli("workload=smoke", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert p.returncode == 2 and p.stderr.strip() == (
        f"error: run directory {tmp_path / 'run'}: {tmp_path / 'run' / 'trace.csv'} is in the way (Is a directory); "
        "a run writes a file of that name there: remove or rename it, or choose another directory"), p.stderr
    assert [f.name for f in (tmp_path / "run").iterdir()] == ["trace.csv"]


def test_a_dangling_link_as_run_directory_is_said_so(tmp_path):
    (tmp_path / "run").symlink_to(tmp_path / "gone")
    p = cli("workload=smoke", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert p.returncode == 2 and p.stderr.strip() == (
        f"error: run directory {tmp_path / 'run'} is not a writable directory (a link to {tmp_path / 'gone'}, "
        "which does not exist); choose another one")


@pytest.mark.slow
def test_a_repeated_sweep_value_and_a_used_sweep_folder_are_refused(tmp_path):
    sw = tmp_path / "sw"
    p = cli("-m", "workload=smoke", "seed=0,0", f"hydra.sweep.dir={sw}")
    assert p.returncode == 2 and "comes twice" in p.stderr and not sw.exists()
    assert cli("-m", "workload=smoke", "seed=0,1", f"hydra.sweep.dir={sw}").returncode == 0
    p = cli("-m", "workload=smoke", "seed=2", f"hydra.sweep.dir={sw}")
    assert p.returncode == 2 and "holds 2 run(s) of an earlier sweep" in p.stderr
    assert sorted(d.name for d in sw.iterdir() if d.is_dir()) == ["seed=0,workload=smoke", "seed=1,workload=smoke"]


@pytest.mark.slow
def test_a_single_run_into_a_sweeps_folder_is_refused(tmp_path):
    sw = tmp_path / "sw"
    assert cli("-m", "workload=smoke", "seed=0,1", f"hydra.sweep.dir={sw}").returncode == 0
    p = cli("workload=smoke", "seed=9", f"hydra.run.dir={sw}")
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
    assert "holds 2 run(s) in its subfolders (a sweep's folder)" in p.stderr
    assert not (sw / "summary.json").exists()
    # a run's own folder is still reused (its outputs replaced)
    assert cli("workload=smoke", "seed=9", f"hydra.run.dir={sw / 'mine'}").returncode == 0
    assert cli("workload=smoke", "seed=8", f"hydra.run.dir={sw / 'mine'}").returncode == 0


def test_a_deleted_setting_is_refused(tmp_path):
    p = cli("workload=smoke", "~seed", f"hydra.run.dir={tmp_path}")
    assert p.returncode == 2 and "~seed deletes a setting" in p.stderr and p.stderr.count("\n") == 1


def held_by_another_process(directory: Path, lock: str):
    """A real second process holding `directory`/`lock` as a run (.lock) or a sweep (.sweep.lock)
    holds it while it works; ends when the returned process is killed."""
    directory.mkdir(parents=True, exist_ok=True)
    code = ("import fcntl, os, sys, time\n"
            f"fd = os.open({str(directory / lock)!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\nos.write(fd, f'{os.getpid()}\\n'.encode())\n"
            "print('held', flush=True)\ntime.sleep(300)\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


@pytest.mark.slow
@pytest.mark.parametrize("lock, args, said", [
    # a single run into the folder of a sweep still running (no job finished yet: no summary.json)
    (".sweep.lock", ["workload=smoke"], "run directory {d} is in use by a sweep (pid {pid}), whose jobs write "
                                        "there; choose a new hydra.run.dir, or wait for the sweep to end"),
    # a sweep into the folder of a single run still working
    (".lock", ["-m", "workload=smoke", "seed=0,1"], "sweep directory {d} is in use by a single run (pid {pid}); "
                                                    "choose a new hydra.sweep.dir, or wait for that run to end"),
])
def test_a_folder_in_use_by_a_sweep_or_a_run_refuses_the_other(tmp_path, lock, args, said):
    """Both were accepted: each holds its own lock file, so `mosaic runs` then tabled the mixture."""
    d = tmp_path / "busy"
    holder = held_by_another_process(d, lock)
    try:
        key = "hydra.sweep.dir" if "-m" in args else "hydra.run.dir"
        p = cli(*args, f"{key}={d}")
        assert p.returncode == 2 and p.stderr.strip() == f"error: {said.format(d=d, pid=holder.pid)}", p.stderr
        assert sorted(x.name for x in d.iterdir()) == [lock]   # nothing written beside the other's lock
    finally:
        holder.kill()
        holder.wait()
    p = cli(*args, f"{key}={d}")   # once it has ended, the folder is usable (the lock file is stale)
    assert p.returncode == 0, p.stderr


@pytest.mark.slow
def test_sigterm_to_a_joblib_sweep_leaves_error_json_in_each_running_job(tmp_path):
    """The jobs the launcher's workers were running held no error.json (their workers were killed
    with the sweep), and the resource trackers warned of leaked semaphores."""
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    sweep = subprocess.Popen([sys.executable, str(ROOT / "experiments" / "run.py"), "-m", *VLLM_ARGS, "seed=0,1",
                              "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={tmp_path / 's'}"],
                             cwd=ROOT, env=fake_vllm_env(FAKE_VLLM_HANG_DIR=str(pid_dir)),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while len(list(pid_dir.glob("*.json"))) < 4:  # both jobs' two workers have an engine up
        assert sweep.poll() is None and time.monotonic() < deadline, sweep.communicate()
        time.sleep(0.2)
    pids = [p for f in pid_dir.glob("*.json") for p in json.loads(f.read_text()).values()]
    sweep.send_signal(signal.SIGTERM)
    _, err = sweep.communicate(timeout=120)
    assert sweep.returncode == 143, err
    assert "Traceback" not in err and "leaked" not in err, err
    assert f"error: 2 job(s) of the sweep in {tmp_path / 's'} were stopped while running (error.json in each)" in err
    for seed in (0, 1):
        (job_dir,) = (tmp_path / "s").glob(f"*seed={seed},*")
        rec = json.loads((job_dir / "error.json").read_text())
        assert rec["exit_code"] == 143 and f"seed={seed}" in rec["overrides"], rec
        assert rec["error"] == "interrupted by SIGTERM: the sweep was stopped while this job ran"
        assert not (job_dir / ".lock").exists() and not (job_dir / "summary.json").exists()
    time.sleep(2)
    assert not [p for p in pids if pid_alive(p)], "a worker or its engine outlived the sweep"
