"""experiments/reproduce.py (mosaic/analysis/sweeps.py): data checked before anything starts; a failed
job does not stop the others."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mosaic.analysis import sweeps as reproduce
from mosaic.config.schema import register_configs

ROOT = Path(__file__).resolve().parents[2]
register_configs()


def cli(*args, env=None):
    return subprocess.run([sys.executable, str(ROOT / "experiments" / "reproduce.py"), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=600, env=env)


def test_plan_expands_the_grid_like_hydra():
    plan = reproduce.plan_sweep(reproduce.Sweep("main", "paper_sweep"), ["workload=synth_small", "seed=0,1"],
                                Path("some/root"))
    assert plan.jobs and len(plan.jobs) % 2 == 0
    for job in plan.jobs:
        keys = [o.split("=", 1)[0] for o in job]
        assert len(keys) == len(set(keys))  # the command line replaced the sweep's own axes
        assert "workload=synth_small" in job
    assert {o for job in plan.jobs for o in job if o.startswith("seed=")} == {"seed=0", "seed=1"}
    assert plan.directory == Path("some/root").resolve() / "main"


@pytest.mark.slow
def test_bad_data_stops_the_sweep_before_any_job(tmp_path, capsys):
    qdir = tmp_path / "questions"
    qdir.mkdir()
    (qdir / "GPQA_test.json").write_text("not json")
    sweep = tmp_path / "sweep"
    # two sweeps of the nine: each composes its jobs' configs to check their data (~0.2 s a job)
    rc = reproduce.reproduce(tmp_path / "results", sweep, "main,replacement_false",
                             extra=["workload=gpqa,mmlu_pro", f"workload.questions_dir={qdir}"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "nothing was started" in err
    assert f"{qdir}/GPQA_test.json: not a readable JSON file" in err
    assert f"{qdir}/MMLU_Pro_test.json' does not exist" in err and "set workload.questions_dir" in err
    assert not sweep.exists() and not (tmp_path / "results").exists()


@pytest.mark.slow
def test_a_setting_every_job_shares_is_checked_before_any_job(tmp_path, capsys):
    """+foo=1 passed the data check ('data OK', exit 0 with --check), then failed each of the
    sweep's 108 jobs in turn."""
    sweep = tmp_path / "sweep"
    assert reproduce.reproduce(tmp_path / "r", sweep, "main", extra=["+foo=1", "workload=synth_small"]) == 2
    err = capsys.readouterr().err
    assert "nothing was started" in err and "unknown setting(s) foo" in err and not sweep.exists()
    assert reproduce.reproduce(tmp_path / "r", sweep, "main", extra=["scheduler.mip_gap=nan", "workload=synth_small"],
                               check_only=True) == 2
    assert "scheduler.mip_gap must be a relative gap" in capsys.readouterr().err



def test_a_setting_every_sweep_shares_is_one_line(tmp_path, capsys):
    """+foo=1 with --check gave the same error once per sweep (11 lines for the whole paper)."""
    assert reproduce.reproduce(tmp_path / "r", tmp_path / "s", "main,K", extra=["+foo=1", "workload=synth_small"],
                               check_only=True) == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "unknown setting(s) foo" in ln]
    assert len(lines) == 1 and lines[0].lstrip().startswith("sweep main,") and "the same in sweep(s) K" in lines[0]


@pytest.mark.slow
def test_bad_arguments_are_one_line_errors(tmp_path, capsys):
    p = cli("--sweeps", "main,nope")   # the command line itself: exit status and message
    assert p.returncode == 2 and "--sweeps: choose among main, policies" in p.stderr
    p = cli("--bogus")   # was Hydra's LexerNoViableAltException
    assert p.returncode == 2 and "error: unrecognized arguments: --bogus" in p.stderr and p.stderr.count("\n") == 1, p.stderr
    assert reproduce.reproduce(tmp_path / "r", extra=[f"hydra.sweep.dir={tmp_path}"]) == 2
    assert "use --sweep-root" in capsys.readouterr().err
    assert reproduce.reproduce(tmp_path / "r", tmp_path / "s", extra=["scheduler=nope"]) == 2
    err = capsys.readouterr().err
    assert "scheduler" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    (tmp_path / "afile").write_text("x")   # was found only after the data check, by the first sweep (exit 1)
    assert reproduce.reproduce(tmp_path / "r", tmp_path / "afile", "main") == 2
    err = capsys.readouterr().err
    assert f"--sweep-root {tmp_path / 'afile'} is a file" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_failed_job_is_reported_and_the_others_are_collected(tmp_path):
    # A job that fails while it runs (every request of the fake engine fails: exit 1), where each
    # job's settings and built run are sound, so the sweep starts; the sim job beside it runs.
    from tests.cli.test_run_cli import fake_vllm_env

    sweep, results = tmp_path / "sweep", tmp_path / "results"
    p = cli("--out", str(results), "--sweep-root", str(sweep), "--sweeps", "main", "workload=smoke",
            "scheduler=fifo", "aggregation=tau1", "aggregation.placement=scheduled", "seed=0", "backend=sim,vllm",
            "hydra.sweep.subdir=${backend.name}", env=fake_vllm_env(FAKE_VLLM_FAIL="*"))
    assert p.returncode == 1, p.stderr
    assert (sweep / "main" / "sim" / "summary.json").is_file()
    err = json.loads((sweep / "main" / "vllm" / "error.json").read_text())
    assert "backend=vllm" in err["overrides"] and "fake engine refuses to start" in err["error"]
    tail = p.stderr[p.stderr.rindex("failed job(s):"):]  # the list comes last, after collect's output
    assert "1 failed job(s):" in p.stderr and "backend=vllm" in tail and "requests failed" in tail
    runs = (results / "runs.csv").read_text().splitlines()
    assert len(runs) == 2 and ",smoke," in runs[1]  # the good job was collected
    # smoke is not in the paper's table: the figures step says so in one line, not a traceback
    assert "Traceback" not in p.stderr and "paper_table.csv has no rows" in p.stderr


@pytest.mark.slow
def test_a_job_its_built_run_refuses_stops_the_sweep_before_any_job(tmp_path):
    # cluster.memory_gib=20 passes the settings check; its built run refuses it (a model fits no worker).
    sweep, results = tmp_path / "sweep", tmp_path / "results"
    p = cli("--out", str(results), "--sweep-root", str(sweep), "--sweeps", "main", "workload=synth_small",
            "scheduler=fifo", "aggregation=tau1", "seed=0", "cluster.memory_gib=80,20",
            "hydra.sweep.subdir=mem${cluster.memory_gib}")
    assert p.returncode != 0, p.stderr
    assert "sweep job" in p.stderr and "cluster.memory_gib=20" in p.stderr and "raise cluster.memory_gib" in p.stderr
    assert "(nothing was run)" in p.stderr and not (sweep / "main" / "mem80.0" / "summary.json").exists()
