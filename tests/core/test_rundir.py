"""mosaic/core/rundir.py: failure records, finding them in a sweep, SIGTERM as an exception."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mosaic.core.errors import ConfigError
from mosaic.core.rundir import (RUN_FILES, RunDirError, check_creatable_dir, check_writable_dir, claim_run_dir, clear_failure, failure_stage,
                             find_failures, format_failures, record_failure, write_atomic)
from mosaic.cli.signals import Terminated, sigterm_as_exit


def test_config_error_record_has_no_traceback_and_others_keep_theirs(tmp_path):
    rec = record_failure(tmp_path / "a", ["seed=1"], ConfigError("seed must be >= 0"), 2)
    assert rec["error"] == "seed must be >= 0" and rec["traceback"] is None and rec["exit_code"] == 2
    try:
        raise RuntimeError("solver\nexploded")
    except RuntimeError as e:
        rec = record_failure(tmp_path / "b", ["x=2"], e, 1)
    assert rec["error"] == "RuntimeError: solver exploded"  # one line
    assert "raise RuntimeError" in rec["traceback"]
    assert json.loads((tmp_path / "b" / "error.json").read_text())["overrides"] == ["x=2"]


def test_find_failures_in_a_sweep(tmp_path):
    record_failure(tmp_path / "job1", ["a=1"], "all 6 requests failed; first error: boom", 1)
    old = tmp_path / "old" / "error.json"
    record_failure(old.parent, ["a=0"], "stale", 1)
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    (tmp_path / "job2").mkdir()
    (tmp_path / "job2" / "summary.json").write_text("{}")
    assert [f["overrides"] for f in find_failures(tmp_path)] == [["a=1"], ["a=0"]]
    recent = find_failures(tmp_path, since=time.time() - 60)
    assert [f["dir"] for f in recent] == [str(tmp_path / "job1")]
    text = format_failures(recent)
    assert text.startswith("1 failed job(s):") and "a=1" in text and "first error: boom" in text
    clear_failure(tmp_path / "job1")
    clear_failure(tmp_path / "job2")  # nothing to clear: no error
    assert find_failures(tmp_path, since=time.time() - 60) == []


@pytest.mark.parametrize("sig, code, name", [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGHUP, 129, "SIGHUP")])
def test_sigterm_and_sighup_unwind_with_their_status_and_the_handlers_are_restored(sig, code, name):
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    cleaned = []
    with pytest.raises(Terminated) as info:
        with sigterm_as_exit():
            try:
                os.kill(os.getpid(), sig)
                time.sleep(5)
            finally:
                cleaned.append(True)
    assert info.value.code == code and info.value.signal_name == name and cleaned == [True]
    assert {s: signal.getsignal(s) for s in before} == before


def test_write_atomic_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "summary.json"
    target.write_text("old")

    def half(f):
        f.write("{\"new\": ")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, half)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["summary.json"]
    write_atomic(target, lambda f: f.write("new"))
    assert target.read_text() == "new"


def test_a_claim_removes_an_earlier_runs_files_and_nothing_else(tmp_path):
    for name in (*RUN_FILES, "run.log", ".plan.json.tmp-1-ab"):
        (tmp_path / name).write_text("old")
    (tmp_path / ".hydra").mkdir()
    with claim_run_dir(tmp_path, "sweep directory", lock=".sweep.lock", clear=False):
        assert all((tmp_path / n).exists() for n in RUN_FILES)   # a sweep's directory: locked only
    with claim_run_dir(tmp_path):
        assert sorted(p.name for p in tmp_path.iterdir()) == [".hydra", ".lock", "run.log"]
    (tmp_path / "file").write_text("")
    for bad in (tmp_path / "file", tmp_path / "file" / "sub"):
        with pytest.raises(RunDirError, match="run directory .* (is a file|a path component is a file)"):
            with claim_run_dir(bad):
                pass
        with pytest.raises(RunDirError, match="^--out "):
            check_writable_dir(bad, "--out")


def test_creatable_dir_check_says_what_the_writable_check_would_and_creates_nothing(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(RunDirError, match=r"^--out .*/file is a file, not a directory"):
        check_creatable_dir(tmp_path / "file", "--out")
    with pytest.raises(RunDirError, match=r"^--out .*/file/a/b is not a writable directory \(a path component is a file\)"):
        check_creatable_dir(tmp_path / "file" / "a" / "b", "--out")
    check_creatable_dir(tmp_path / "new" / "deeper", "--out")
    assert not (tmp_path / "new").exists()
    with pytest.raises(RunDirError, match=r"^--out .* is not a writable directory"):   # not an OSError traceback
        check_creatable_dir(tmp_path / ("x" * 300) / "a", "--out")


def test_failure_stage_from_the_traceback():
    def run_stage(stage):  # noqa: ARG001 - the pipeline's function, by name and its `stage`
        raise RuntimeError("x")

    for stage in ("expert", "aggregator"):
        try:
            run_stage(stage)
        except RuntimeError as e:
            assert failure_stage(e) == stage
    assert failure_stage(RuntimeError("never raised"), "outputs") == "outputs"


@pytest.mark.parametrize("reported", [False, True])
def test_ctrl_c_ends_the_process_by_sigint_with_one_line_and_no_traceback(reported):
    code = ("from mosaic.cli.signals import InterruptReported, quiet_interrupt\n"
            "with quiet_interrupt():\n"
            f"    raise {'InterruptReported' if reported else 'KeyboardInterrupt'}\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == -signal.SIGINT   # a shell reports 130
    assert "Traceback" not in p.stderr
    assert p.stderr.count("error: interrupted by Ctrl-C") == (0 if reported else 1), p.stderr


_LOST_CTRL_C = """
import os, signal, time
from mosaic.core.interrupts import raise_if_interrupted
from mosaic.cli.signals import quiet_interrupt
with quiet_interrupt():
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
    except BaseException:   # a library's bare `except:`
        {then}
    {after}
    print("went on")
"""


@pytest.mark.parametrize("then, after, went_on", [
    ("pass", "pass", True),                              # swallowed: the block ends anyway
    ("raise ValueError('in a finally')", "pass", False),  # turned into another error
    ("pass", "raise_if_interrupted()", False)])          # swallowed, and the next step checks
def test_a_ctrl_c_a_library_swallowed_still_ends_the_process_by_sigint(then, after, went_on):
    p = subprocess.run([sys.executable, "-c", _LOST_CTRL_C.format(then=then, after=after)],
                       capture_output=True, text=True, timeout=60,
                       preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert p.returncode == -signal.SIGINT and p.stderr.strip() == "error: interrupted by Ctrl-C (SIGINT)", p.stderr
    assert ("went on" in p.stdout) == went_on


@pytest.mark.slow   # a second and a half or more
def test_a_ctrl_c_swallowed_while_the_job_imports_ends_the_run_as_interrupted(tmp_path):
    # Before: the run went on to finish (exit 0), or with vLLM workers waited on them for ever.
    script = """
import os, runpy, signal, sys
class Hook:
    def find_spec(self, name, path=None, target=None):
        if name == "simpy":   # imported when the job starts, after Hydra has composed it
            sys.meta_path.remove(self)
            try:
                os.kill(os.getpid(), signal.SIGINT)
                import time; time.sleep(5)
            except BaseException:
                pass
        return None
sys.meta_path.insert(0, Hook())
sys.argv = ["experiments/run.py", "workload=smoke", "hydra.run.dir=%s"]
runpy.run_module("experiments.run", run_name="__main__")
""" % (tmp_path / "out")
    root = Path(__file__).resolve().parents[2]
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180, cwd=root,
                       preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert p.returncode == -signal.SIGINT and "Traceback" not in p.stderr, p.stderr
    assert p.stderr.strip().startswith("error: interrupted by Ctrl-C (SIGINT)"), p.stderr
    assert json.loads((tmp_path / "out" / "error.json").read_text())["exit_code"] == 130
    assert not (tmp_path / "out" / "summary.json").exists()


@pytest.mark.parametrize("signal_name, raise_it, code", [("SIGTERM", "Terminated(143)", 143),
                                                         ("SIGHUP", "Terminated(129)", 129),
                                                         ("Ctrl-C (SIGINT)", "KeyboardInterrupt", -signal.SIGINT)])
def test_an_interrupt_before_the_job_starts_is_one_line_and_recorded(tmp_path, signal_name, raise_it, code):
    # As if the signal came while Hydra was still setting the job up (after the run directory was claimed).
    script = ("import mosaic.cli.main as m\nfrom mosaic.cli.signals import Terminated\n"
              f"def early():\n    raise {raise_it}\n"
              f"m._job = early\nm.main(['workload=smoke', 'hydra.run.dir={tmp_path / 'out'}'])\n")
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert p.returncode == code and p.stderr.strip() == f"error: interrupted by {signal_name}", p.stderr
    rec = json.loads((tmp_path / "out" / "error.json").read_text())
    assert rec["error"] == f"interrupted by {signal_name} before the run started"
    assert rec["exit_code"] == (code if code > 0 else 130)


# Sends the signal while the entry point imports Hydra (the ~0.2 s before the run's own handling).
_SIGNAL_DURING_IMPORT = """
import os, runpy, signal, sys
class Hook:
    def find_spec(self, name, path=None, target=None):
        if name == "hydra":
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.{sig})
        return None
sys.meta_path.insert(0, Hook())
sys.argv = [{entry!r}, "workload=smoke"]
{start}
"""


@pytest.mark.parametrize("entry, start", [
    ("experiments/run.py", "runpy.run_module('experiments.run', run_name='__main__')"),
    ("mosaic", "from mosaic.__main__ import main\nsys.argv = ['mosaic', 'run', 'workload=smoke']\nsys.exit(main())")])
@pytest.mark.parametrize("sig, said, code", [("SIGINT", "Ctrl-C (SIGINT)", -signal.SIGINT), ("SIGTERM", "SIGTERM", 143),
                                             ("SIGHUP", "SIGHUP", 129)])
def test_a_signal_while_the_entry_point_imports_is_one_line(entry, start, sig, said, code):
    root = Path(__file__).resolve().parents[2]
    script = _SIGNAL_DURING_IMPORT.format(sig=sig, entry=entry, start=start)
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=root)
    assert p.returncode == code and p.stderr.strip() == f"error: interrupted by {said}", p.stderr


# ---------------------------------------------------------------- a run folder read back (drawing, exporting)

@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    from mosaic.run.app import run, write_outputs
    from mosaic.run.builder import compose

    flat, graph = tmp_path_factory.mktemp("flat"), tmp_path_factory.mktemp("graph")
    write_outputs(run(compose(["workload=synth_small", "workload.n_queries=4"])), flat)
    write_outputs(run(compose(["topology=tree", "workload=synth_small", "workload.n_queries=2"])), graph)
    return {"flat": flat, "graph": graph}


def _edit_csv(path: Path, column: str, value=None, drop: bool = False):
    import pandas as pd

    t = pd.read_csv(path, dtype=str, keep_default_na=False)
    if drop:
        t = t.drop(columns=[column])
    else:
        t.loc[len(t) - 1, column] = value
    t.to_csv(path, index=False)


DAMAGE = {
    "a session column gone": (lambda d: _edit_csv(d / "sessions.csv", "run_end_s", drop=True),
                              ["sessions.csv", "no column run_end_s"]),
    "a worker that is text": (lambda d: _edit_csv(d / "sessions.csv", "worker", "gpu0"),
                              ["sessions.csv", "column worker", "'gpu0' is not an integer"]),
    "a request time of nan": (lambda d: _edit_csv(d / "trace.csv", "finish_s", "nan"),
                              ["trace.csv", "column finish_s", "not a finite number"]),
    "a token count of 1.5": (lambda d: _edit_csv(d / "trace.csv", "output_tokens", "1.5"),
                             ["trace.csv", "column output_tokens", "not an integer"]),
    "a binary table": (lambda d: (d / "trace.csv").write_bytes(b"\xff\xfe\x00garbage\x00\x81"),
                       ["trace.csv"]),
    "a session ending before the run began": (lambda d: _edit_csv(d / "sessions.csv", "run_end_s", "-100"),
                                              ["sessions.csv", "column run_end_s", "-100 is outside [0, 1e+09]"]),
    "a request 1e308 s long": (lambda d: _edit_csv(d / "trace.csv", "finish_s", "1e308"),
                               ["trace.csv", "column finish_s", "1e308 is outside"]),
    "a trace cut short": (lambda d: (d / "trace.csv").write_text(
        "\n".join((d / "trace.csv").read_text().splitlines()[:3]) + "\n"),   # was 2 of N requests, exit 0
        ["trace.csv", "2 requests, where its summary.json counts"]),
    "sessions without rows": (lambda d: (d / "sessions.csv").write_text(
        (d / "sessions.csv").read_text().splitlines()[0] + "\n"), ["sessions.csv", "no rows"]),
    "a summary without workers": (lambda d: (d / "summary.json").write_text(json.dumps(
        {k: v for k, v in json.loads((d / "summary.json").read_text()).items() if k != "workers"})),
        ["summary.json", "no workers"]),
    # Adversarial pass 6: each of these was drawn or exported with exit 0
    "a session row doubled": (lambda d: (d / "sessions.csv").write_text(
        (d / "sessions.csv").read_text() + (d / "sessions.csv").read_text().splitlines()[-1] + "\n"),
        ["sessions.csv", "sessions, where its summary.json's workers ran"]),
    "sessions cut short": (lambda d: (d / "sessions.csv").write_text(
        "\n".join((d / "sessions.csv").read_text().splitlines()[:2]) + "\n"),
        ["sessions.csv", "1 sessions, where its summary.json's workers ran"]),
    "a session on a worker the run did not have": (lambda d: _edit_csv(d / "sessions.csv", "worker", "99"),
                                                   ["sessions.csv", "worker 99, where the run had"]),
    "a request finishing before its first token": (lambda d: _edit_csv(d / "trace.csv", "finish_s", "0"),
                                                   ["trace.csv", "finish_s 0 before first_token_s"]),
    "a negative run time in the summary": (lambda d: (d / "summary.json").write_text(json.dumps(
        {**json.loads((d / "summary.json").read_text()), "seed": 0, "makespan_s": -5, "end_to_end_s": -5})),
        ["summary.json", "is -5, not a time in [0, 1e+09] s"]),
    "a run time that is text": (lambda d: (d / "summary.json").write_text(json.dumps(
        {**json.loads((d / "summary.json").read_text()), "makespan_s": "abc", "end_to_end_s": "abc"})),
        ["summary.json", "is 'abc', not a time"]),
    "a failure record beside it": (lambda d: (d / "error.json").write_text(json.dumps(
        {"stage": "expert", "error": "engine died"})), ["holds a failed run", "expert stage: engine died"]),
}


@pytest.mark.parametrize("kind", ["flat", "graph"])
@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_run_folder_is_one_line_naming_the_file_and_column(finished, tmp_path, capsys, kind, damage):
    """Drawing or exporting a run folder whose files were changed since the run: exit 2 and one line
    that names the file and what is wrong in it, never a KeyError or a parser's traceback."""
    import shutil

    from mosaic.run import perfetto, timeline

    d = tmp_path / "run"
    shutil.copytree(finished[kind], d)
    damage_it, said = DAMAGE[damage]
    damage_it(d)
    for main in (perfetto.main, timeline.main):
        if main is timeline.main and "trace.csv" in said:
            continue    # the timeline reads sessions.csv only
        assert main([str(d)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert all(s in err for s in said), err


def test_an_intact_run_folder_reads_back_including_cancelled_graph_requests(finished, tmp_path):
    """A graph run's cancelled requests have no times: the reader lets them pass (they are not drawn)."""
    import shutil

    from mosaic.core.rundir import read_run_dir

    for kind, d in finished.items():
        summary, tables = read_run_dir(d, ("trace.csv", "sessions.csv"))
        assert tables["sessions.csv"] and tables["trace.csv"]
    d = tmp_path / "graph"
    shutil.copytree(finished["graph"], d)
    _edit_csv(d / "trace.csv", "status", "cancelled")
    _edit_csv(d / "trace.csv", "first_token_s", "")
    read_run_dir(d, ("trace.csv",))
    _edit_csv(d / "trace.csv", "status", "served")
    with pytest.raises(ValueError, match="column first_token_s"):
        read_run_dir(d, ("trace.csv",))
    # a graph run's own columns are checked too (compare_graph_runs reads them); a flat run has none
    _edit_csv(d / "trace.csv", "layer", drop=True)
    with pytest.raises(ValueError, match=r"trace.csv: no column layer"):
        read_run_dir(d, ("trace.csv",))
    _edit_csv(d / "queries.csv", "latency_s", "abc")
    with pytest.raises(ValueError, match=r"queries.csv: line \d+, column latency_s: 'abc' is not a finite number"):
        read_run_dir(d, ("queries.csv",))
    read_run_dir(finished["flat"], ("trace.csv", "queries.csv"))


def test_interrupted_sweep_jobs_get_error_json_and_finished_or_live_ones_are_left(tmp_path):
    import fcntl

    from mosaic.core.rundir import record_interrupted_jobs

    def job(name, *files):
        d = tmp_path / name
        (d / ".hydra").mkdir(parents=True)
        (d / ".hydra" / "overrides.yaml").write_text(f"- seed={name}\n")
        for f in files:
            (d / f).write_text("{}")
        return d
    killed = job("0", ".lock", ".trace.csv.tmp-1-x")
    done = job("1", ".lock", "summary.json")
    live = job("2", ".lock")
    fd = os.open(live / ".lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        assert record_interrupted_jobs(tmp_path, "SIGTERM", 143) == 1
    finally:
        os.close(fd)
    rec = json.loads((killed / "error.json").read_text())
    assert rec["overrides"] == ["seed=0"] and rec["exit_code"] == 143 and rec["stage"] == "run"
    assert sorted(f.name for f in killed.iterdir()) == [".hydra", "error.json"]   # lock and temporary file gone
    assert not (done / "error.json").exists() and not (live / "error.json").exists()
