"""The failure record of a run, one class per test: every failure writes error.json with its stage,
a reused directory holds one run's files, outputs are written atomically, a directory is claimed by
one run at a time and checked before any work, Hydra's config errors are one line and exit 2."""
import fcntl
import json
import os
import sys
from pathlib import Path

import pytest

from mosaic.run import app, builder, pipeline
from mosaic.run.app import RunOutput
from mosaic.run.builder import CONF_DIR, compose
from mosaic.cli.job import run_job
from mosaic.cli.precheck import hydra_prepared
from mosaic.core.rundir import LOCK_FILE, OUTPUT_FILES, RUN_FILES, claim_run_dir, find_failures
from tests.helpers import entry_module
from mosaic.cli.signals import Terminated

SMALL = ("workload=synth_small", "workload.n_queries=40")


def job(directory, *overrides, multirun=False):
    """The CLI's job in this process (as tests/cli/test_run_cli.py); returns the exit code."""
    return run_job(compose([*SMALL, *overrides]), directory, [*SMALL, *overrides], multirun)


def error_lines(capsys):
    return [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]


def record(directory):
    return json.loads((directory / "error.json").read_text())


def leftovers(directory):
    """Temporary files of an unfinished write."""
    return [p.name for p in directory.iterdir() if ".tmp-" in p.name]


def boom(*args, **kwargs):
    raise RuntimeError("boom\nsecond line")


# ---------------------------------------------------------------- any failure: error.json, exit code

@pytest.mark.parametrize("where, stage", [
    ((builder, "build_workload"), "build"),   # building the run's objects
    ((pipeline, "execute"), "expert"),        # the first stage's execution
    ((app, "query_rows"), "outputs"),         # serialising the outputs
])
def test_unexpected_error_writes_error_json_and_exits_1(tmp_path, capsys, monkeypatch, where, stage):
    monkeypatch.delenv("MOSAIC_DEBUG", raising=False)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.setattr(*where, boom)
    assert job(tmp_path) == 1
    err = error_lines(capsys)
    assert len(err) == 1 and "Traceback" not in err[0]
    assert err[0].startswith("error: RuntimeError: boom second line") and f"stage {stage}" in err[0]
    rec = record(tmp_path)
    assert rec["type"] == "RuntimeError" and rec["message"] == "boom\nsecond line" and rec["stage"] == stage
    assert rec["exit_code"] == 1 and "RuntimeError: boom" in rec["traceback"]
    assert not (tmp_path / "summary.json").exists() and leftovers(tmp_path) == []


def test_debug_prints_the_traceback_and_a_sweep_job_goes_on(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(pipeline, "execute", boom)
    monkeypatch.setenv("MOSAIC_DEBUG", "1")
    assert job(tmp_path / "a") == 1
    assert "Traceback (most recent call last)" in capsys.readouterr().err
    monkeypatch.delenv("MOSAIC_DEBUG")
    assert job(tmp_path / "b", multirun=True) == 0        # the sweep's other jobs still run
    assert "(job workload=synth_small" in error_lines(capsys)[0]
    assert [f["stage"] for f in find_failures(tmp_path)] == ["expert", "expert"]


def test_config_and_build_stages_are_recorded(tmp_path, capsys):
    assert job(tmp_path, "+foo=1") == 2                      # the config itself
    assert record(tmp_path)["stage"] == "config" and record(tmp_path)["traceback"] is None
    assert job(tmp_path, "scheduler.name=nope") == 2       # known only when the run is built
    assert record(tmp_path)["stage"] == "build" and record(tmp_path)["type"] == "ConfigError"


# ---------------------------------------------------------------- a reused directory

@pytest.mark.slow
def test_reused_directory_after_a_failure_holds_no_stale_summary(tmp_path, capsys, monkeypatch):
    assert job(tmp_path) == 0
    assert {p.name for p in tmp_path.iterdir()} >= set(OUTPUT_FILES)
    (tmp_path / ".summary.json.tmp-1-abc").write_text("{")      # a killed writer's leftover
    with monkeypatch.context() as m:
        m.setattr(pipeline, "execute", boom)
        assert job(tmp_path, "seed=1") == 1
    assert [p for p in RUN_FILES if (tmp_path / p).exists()] == ["error.json"]  # the old outputs are gone
    assert leftovers(tmp_path) == []
    assert job(tmp_path, "cluster.n_workers=0") == 2             # a config error: the same
    assert [p for p in RUN_FILES if (tmp_path / p).exists()] == ["error.json"]
    assert job(tmp_path) == 0                                    # and a success clears the failure
    assert [p for p in RUN_FILES if (tmp_path / p).exists()] == [*OUTPUT_FILES, "timeline.png"]


# ---------------------------------------------------------------- atomic outputs

def test_a_serializer_failing_mid_way_leaves_no_summary(tmp_path, capsys, monkeypatch):
    assert job(tmp_path) == 0
    before = (tmp_path / "summary.json").read_text()
    from mosaic.run import app
    real = app.run

    def unserializable(cfg):   # json.dump has written part of the file when it meets the object
        out = real(cfg)
        return RunOutput({**out.summary, "zz_last": object()}, out.result)

    monkeypatch.setattr(app, "run", unserializable)   # cli imports it when a job starts
    assert job(tmp_path) == 1
    assert before and not (tmp_path / "summary.json").exists() and leftovers(tmp_path) == []
    rec = record(tmp_path)
    assert rec["stage"] == "outputs" and rec["type"] == "TypeError"


def test_a_full_disk_while_writing_is_one_line_naming_the_fix(tmp_path, capsys, monkeypatch):
    """It was "OSError: [Errno 28] No space left on device", as an unexpected error with a traceback."""
    def full_disk(f, obj, indent):   # the kernel's own ENOSPC, as a full device gives it
        with open("/dev/full", "w") as full:
            full.write("{}")
            full.flush()

    monkeypatch.setattr(app, "_json", full_disk)
    assert job(tmp_path) == 1
    assert error_lines(capsys)[-1] == (f"error: could not write the run's outputs in {tmp_path}: No space left on "
                                       "device; free space on that device or choose another hydra.run.dir")
    rec = record(tmp_path)
    assert rec["stage"] == "outputs" and rec["traceback"] is None and not (tmp_path / "summary.json").exists()


def test_a_device_with_almost_no_space_is_refused_before_the_run(tmp_path, monkeypatch):
    import os
    from collections import namedtuple

    from mosaic.core import rundir

    real = os.statvfs
    stat = namedtuple("stat", "f_bavail f_frsize")
    monkeypatch.setattr(rundir.os, "statvfs", lambda d: stat(12, 1024) if str(d) == str(tmp_path) else real(d))
    with pytest.raises(rundir.RunDirError, match=f"^run directory {tmp_path} is on a device with 12 KiB free; free "
                                                 "space there or choose another one$"):
        with claim_run_dir(tmp_path):
            pass
    assert list(tmp_path.iterdir()) == []


def test_the_run_log_on_a_full_disk_says_so_once(capsys):
    """logging printed a 15-line "--- Logging error ---" traceback for every record it could not write."""
    import logging

    from mosaic.core.log_routing import RunLogFile

    handler = RunLogFile("/dev/full")
    log = logging.getLogger("test_full_disk_log")
    log.addHandler(handler)
    try:
        for i in range(3):
            log.warning("record %d", i)
    finally:
        log.removeHandler(handler)
        handler.close()
    assert capsys.readouterr().err.splitlines() == [
        "warning: the run log /dev/full could not be written (No space left on device); it is not written from here "
        "on, the console still shows the log"]


def test_sigterm_while_writing_leaves_no_summary(tmp_path, capsys, monkeypatch):
    real = app._json

    def interrupted(f, obj, indent):
        if "end_to_end_s" in obj:      # the summary: half of it written, then SIGTERM
            f.write('{"scheduler": ')
            raise Terminated(143)
        real(f, obj, indent)

    monkeypatch.setattr(app, "_json", interrupted)
    with pytest.raises(Terminated):
        job(tmp_path)
    assert not (tmp_path / "summary.json").exists() and leftovers(tmp_path) == []
    rec = record(tmp_path)
    assert rec["exit_code"] == 143 and rec["stage"] == "outputs" and rec["type"] == "Terminated"
    assert "interrupted by SIGTERM" in capsys.readouterr().err


# ---------------------------------------------------------------- one run per directory

def hold_lock(directory, pid=4242):
    """Another run's lock: flock on its own open file, as a second process would hold it."""
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, f"{pid}\n".encode())
    return fd


def test_a_locked_directory_refuses_a_second_run(tmp_path, capsys, monkeypatch):
    sweep, tmp_path = tmp_path, tmp_path / "job"
    tmp_path.mkdir()
    (tmp_path / "summary.json").write_text('{"the other run": 1}')
    fd = hold_lock(tmp_path)
    monkeypatch.setattr(builder, "typed", boom)     # nothing may start
    try:
        assert job(tmp_path) == 2
        assert error_lines(capsys) == [f"error: run directory {tmp_path} is in use by another run (pid 4242); "
                                       "wait for it or choose another directory"]
        assert (tmp_path / "summary.json").read_text() == '{"the other run": 1}'   # untouched
        assert not (tmp_path / "error.json").exists()
        # In a sweep the refused job is recorded beside the directory, so the sweep lists it.
        assert job(tmp_path, multirun=True) == 0
        (f,) = find_failures(sweep)
        assert f["dir"].startswith(f"{tmp_path}.refused-") and f["exit_code"] == 2
    finally:
        os.close(fd)
    monkeypatch.undo()
    assert job(tmp_path) == 0 and not (tmp_path / LOCK_FILE).exists()   # released and removed


def test_the_claim_is_reentrant_in_one_process_and_released(tmp_path):
    with claim_run_dir(tmp_path):
        assert (tmp_path / LOCK_FILE).read_text().strip() == str(os.getpid())
        with claim_run_dir(tmp_path):      # the CLI claims before Hydra, the job again inside
            pass
        assert (tmp_path / LOCK_FILE).exists()
    assert not (tmp_path / LOCK_FILE).exists()


# ---------------------------------------------------------------- output paths checked first

@pytest.mark.parametrize("make", ["file", "under_a_file"])
def test_a_run_directory_that_is_a_file_exits_2_on_one_line(tmp_path, capsys, monkeypatch, make):
    (tmp_path / "f").write_text("not a directory")
    target = tmp_path / "f" if make == "file" else tmp_path / "f" / "run"
    monkeypatch.setattr(builder, "typed", boom)     # checked before the config is even read
    assert job(target) == 2
    (line,) = error_lines(capsys)
    assert line.startswith(f"error: run directory {target} ") and "choose another one" in line
    assert (tmp_path / "f").read_text() == "not a directory"


# ---------------------------------------------------------------- Hydra's own config errors

def prepared(*args):
    with hydra_prepared(list(args), CONF_DIR, "run") as out:
        return out


@pytest.mark.parametrize("args, message", [
    (["scheduler=nope"], "Could not find 'scheduler/nope'; choose one of: data_parallel, engine_aware"),
    (["cluster.n_workers=four"], "Value 'four' of type 'str' could not be converted to Integer"),
    (["cluster.n_workrs=4"], "cluster.n_workrs is not a setting (did you mean cluster.n_workers?)"),
    (["seed=0,1"], "seed=0,1 gives several values: add -m"),
    # a comma in a path is advised quoting; a plain value's comma is not
    (["workload.profiles=/p/a,b.yaml"], "or, if the comma is part of a path, quote the value (in the shell: "
                                       "'workload.profiles=\"/p/a,b.yaml\"')"),
    (["-m", "seed=0,x"], "sweep job seed=x workload=synth_small: Error merging override seed=x"),
    (["-m", "seed=0,1", "hydra.sweep.subdir=same"], "would both write into <sweep dir>/same"),
])
def test_hydra_config_errors_exit_2_on_one_line(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as e:
        prepared(*args, "workload=synth_small", f"hydra.run.dir={tmp_path / 'run'}",
                 f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert e.value.code == 2
    (line,) = error_lines(capsys)
    assert line.startswith("error: ") and message in line
    if "-m" not in args:   # the run directory is known: the failure is recorded there
        rec = record(tmp_path / "run")
        assert rec["stage"] == "config" and rec["exit_code"] == 2 and message in rec["error"]
        assert all(not o.startswith("hydra.") for o in rec["overrides"])
    assert not (tmp_path / "sweep").exists()      # a sweep ran no job


def test_a_plain_comma_is_not_taken_for_a_path(tmp_path, capsys):
    with pytest.raises(SystemExit):
        prepared("seed=0,1", "workload=synth_small", f"hydra.run.dir={tmp_path / 'run'}")
    assert "quote" not in error_lines(capsys)[0]


def test_a_good_command_line_is_pinned_to_the_directory_it_claims(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with hydra_prepared(["workload=synth_small", "scheduler=fifo"], CONF_DIR, "run") as args:
        assert args[:2] == ["workload=synth_small", "scheduler=fifo"]
        (pin,) = args[2:]
        key, _, value = pin.partition("=")
        directory = tmp_path / value.strip("'")
        assert key == "hydra.run.dir" and directory.name.endswith("_fifo_synth_small")
        assert (directory / LOCK_FILE).exists()   # held while Hydra runs
        fd = os.open(directory / LOCK_FILE, os.O_RDWR)
        with pytest.raises(BlockingIOError):      # a second run (another open file) is refused
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.close(fd)
    assert not (directory / LOCK_FILE).exists()
    assert prepared("--hydra-help") == ["--hydra-help"]   # left to Hydra
    with pytest.raises(SystemExit) as e:          # the app's help: printed here (mosaic/cli/help.py)
        prepared("--help")
    assert e.value.code == 0 and "== Configuration groups ==" in capsys.readouterr().out
    (tmp_path / "f").write_text("")
    with pytest.raises(SystemExit) as e:          # the run directory a file: before Hydra starts
        prepared("workload=synth_small", f"hydra.run.dir={tmp_path / 'f'}")
    assert e.value.code == 2 and error_lines(capsys) == [
        f"error: run directory {tmp_path / 'f'} is a file, not a directory; choose another one"]


# ---------------------------------------------------------------- compare_policies --out

def test_compare_policies_checks_out_before_any_run(tmp_path, capsys, monkeypatch):
    import runpy

    from mosaic.analysis import policies
    from mosaic.core.rundir import RunDirError

    monkeypatch.setattr(policies, "compare", boom)           # no run may start
    (tmp_path / "f").write_text("")
    with pytest.raises(RunDirError, match="is a file"):
        policies.write(tmp_path / "f", [0])
    script = builder.CONF_DIR.parents[1] / "experiments" / "compare_policies.py"
    monkeypatch.setattr(sys, "argv", [str(script), "--seeds", "0", "--out", str(tmp_path / "f" / "results")])
    with pytest.raises(SystemExit) as e:
        runpy.run_module(entry_module("compare_policies"), run_name="__main__")
    assert e.value.code == 2
    assert error_lines(capsys) == [f"error: --out {tmp_path / 'f' / 'results'} is not a writable directory "
                                   "(a path component is a file); choose another one"]


def test_compare_policies_writes_outputs_not_the_committed_results_unless_asked(monkeypatch):
    import runpy

    from mosaic.analysis import policies

    seen = []
    monkeypatch.setattr(policies, "write", lambda out, seeds, command: seen.append(out) or "")
    script = builder.CONF_DIR.parents[1] / "experiments" / "compare_policies.py"
    root = script.parents[1]
    for argv, want in (([], root / "outputs" / "policies"), (["--out", "results"], Path("results"))):
        monkeypatch.setattr(sys, "argv", [str(script), "--seeds", "0", *argv])
        runpy.run_module(entry_module("compare_policies"), run_name="__main__")
        assert seen[-1] == want
    assert policies.POLICIES[0] == "engine_aware"   # the default scheduler is compared too


# ---------------------------------------------------------------- every script's --out, before its work

@pytest.mark.parametrize("script, kind", [
    ("fidelity", "dir"), ("reproduce", "dir"), ("length_signals", "dir"), ("shard_throughput", "dir"),
    ("invert_walls", "dir"), ("bench_scheduler", "dir"), ("fit_profiles", "file"),
    ("fit_difficulty", "file"), ("plot_timeline", "file"), ("collect", "dir")])
def test_scripts_refuse_an_unusable_out_before_any_work(script, kind, tmp_path, capsys, monkeypatch):
    import runpy

    (tmp_path / "f").write_text("")
    out = tmp_path / "f" / ("results" if kind == "dir" else "out.yaml")
    path = builder.CONF_DIR.parents[1] / "experiments" / f"{script}.py"
    monkeypatch.setattr(sys, "argv", [str(path), "--out", str(out)])
    with pytest.raises(SystemExit) as e:
        runpy.run_module(entry_module(script), run_name="__main__")
    assert e.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--out" in last and ("(a path component is a file)" in last or "is a file, not a directory" in last)
    if kind == "file":   # a folder where a file is wanted
        monkeypatch.setattr(sys, "argv", [str(path), "--out", str(tmp_path)])
        with pytest.raises(SystemExit) as e:
            runpy.run_module(entry_module(script), run_name="__main__")
        assert e.value.code == 2
        assert "is a directory; give a file name in it" in capsys.readouterr().err


@pytest.mark.parametrize("script, args, says", [
    ("shard_throughput", ["--sizes", "0", "16"], "--sizes: shard sizes are prompts per session, each >= 1"),
    ("shard_throughput", ["--workload", "nope"], "argument --workload: invalid choice: 'nope'"),
    ("plot_timeline", ["--workload", "nope"], "argument --workload: invalid choice: 'nope'"),
    ("invert_walls", ["--seed", "-3"], "--seed must be >= 0 (got -3)"),
    # --runs draws finished runs: the simulation's settings would be ignored (it drew the same picture)
    ("plot_timeline", ["--runs", "{tmp}", "--seed", "3"], "--seed selects what to simulate, and --runs draws"),
    ("plot_timeline", ["--policies", "ilp", "fifo", "ilp"], "--policies names ilp more than once"),   # was drawn twice
    ("collect", ["--bogus"], "unrecognized arguments: --bogus"),
    ("bench_scheduler", ["--jobs", "-1"], "--jobs must be >= 0 (got -1; 0 is one per CPU core)"),
])
def test_scripts_refuse_bad_arguments_in_one_line(script, args, says, tmp_path, capsys, monkeypatch):
    import runpy

    path = builder.CONF_DIR.parents[1] / "experiments" / f"{script}.py"
    args = [a.format(tmp=tmp_path) for a in args]
    monkeypatch.setattr(sys, "argv", [str(path), *args, "--out", str(tmp_path / "o.png")])
    with pytest.raises(SystemExit) as e:
        runpy.run_module(entry_module(script), run_name="__main__")
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1, err   # not argparse's usage block above it


def test_figures_says_a_missing_or_damaged_results_folder_in_one_line(tmp_path, capsys, monkeypatch):
    import runpy

    script = "figures"
    path = builder.CONF_DIR.parents[1] / "experiments" / "figures.py"
    (tmp_path / "file").write_text("")
    (tmp_path / "empty").mkdir()
    (tmp_path / "damaged").mkdir()
    (tmp_path / "damaged" / "paper_table.csv").write_text("wl,seed\nx,0\n")
    (tmp_path / "no_rows").mkdir()
    (tmp_path / "no_rows" / "paper_table.csv").write_text("")   # a collect that was cut short
    for results, said in [("file", "--results {} is not a folder"),
                          ("empty", "error: {}/paper_table.csv: no such file; write the results first"),
                          ("damaged", "error: a table under {} has no column"),
                          ("no_rows", "error: {}/paper_table.csv has no rows; regenerate it")]:
        monkeypatch.setattr(sys, "argv", [str(path), "--results", str(tmp_path / results)])
        with pytest.raises(SystemExit) as e:
            runpy.run_module(entry_module(script), run_name="__main__")
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert said.format(tmp_path / results) in err.strip().splitlines()[-1] and "Traceback" not in err
        assert not (tmp_path / results / "figures").exists()   # nothing drawn, no empty figures/ left
    monkeypatch.setattr(sys, "argv", [str(path), "--results", str(tmp_path / "empty"), "--format", "png,jpg"])
    with pytest.raises(SystemExit) as e:
        runpy.run_module(entry_module(script), run_name="__main__")
    assert e.value.code == 2
    assert "--format png,jpg: give one or more of png, pdf, svg" in capsys.readouterr().err
