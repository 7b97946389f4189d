"""What a run leaves behind when it fails, the run directory it owns, and how a sweep finds out.

A run directory holds one run's outputs at a time. `claim_run_dir` checks it before any work starts
(it must be, or be creatable as, a writable directory), locks it (`.lock`, fcntl.flock; a second
run into it while the first runs is refused), and removes a previous run's outputs and failure
record, so one run's summary.json never sits beside another's error.json. Outputs are written
with `write_atomic` (a temporary file in the same directory, then os.replace), summary.json last:
a directory with summary.json and no error.json holds one finished run.

A job of a sweep must not take the other jobs down: Hydra's sweeper re-raises the first failed
job's exception once its batch is done (and a SystemExit inside a joblib worker cancels the jobs
still running), so the other jobs' results and the failure summary would be lost. Instead a job
that fails writes `error.json` into its own directory and returns normally; the sweep, and
experiments/reproduce.py, then list every failed job and exit non-zero.
"""
from __future__ import annotations

import errno
import fcntl
import json
import math
import os
import shutil
import sys
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Callable, Iterator, Sequence

from mosaic.core.errors import ConfigError

ERROR_FILE = "error.json"
SUMMARY_FILE = "summary.json"
# What one run writes (summary.json last: it marks a finished run), and with error.json, what a
# new run in the same directory removes first.
OUTPUT_FILES = ("plan.json", "trace.csv", "sessions.csv", "queries.csv", "trace.perfetto.json", SUMMARY_FILE)
# Drawn after summary.json from the rows of sessions.csv (mosaic/run/timeline.py); a run without
# it (drawing failed, said in run.log) is still finished.
DERIVED_FILES = ("timeline.png", "timeline.pdf")
# The profile a run calibrated to the machine (workload.calibrate=true), written before summary.json.
CALIBRATED_PROFILE_FILE = "profile.calibrated.yaml"
RUN_FILES = (*OUTPUT_FILES, *DERIVED_FILES, CALIBRATED_PROFILE_FILE, ERROR_FILE)
LOCK_FILE = ".lock"
SWEEP_LOCK_FILE = ".sweep.lock"   # a sweep's folder: its jobs may claim .lock in it
# Less free space than this where outputs go is refused before any work: Hydra's own config
# files and the run's log would fail first, with tracebacks.
MIN_FREE_BYTES = 1 << 20
TMP_MARK = ".tmp-"   # .<name>.tmp-<pid>-<random>: a file being written (write_atomic)
# Where a run failed (error.json "stage"): the config, building the run's objects, the expert or
# the aggregator stage, elsewhere in the run (metrics, all requests failed), writing its outputs.
STAGES = ("config", "build", "expert", "aggregator", "run", "outputs")


def run_folders(directory: Path, below: bool = False) -> int:
    """Run folders under `directory` (a summary.json or an error.json in them): a sweep's jobs
    that have ended; 0 where it is not a readable directory. below: only those in its subfolders
    (not a run in `directory` itself)."""
    directory = Path(directory)
    try:
        found = {p.parent for name in (SUMMARY_FILE, ERROR_FILE) for p in directory.rglob(name)}
    except OSError:
        return 0
    return len(found - {directory}) if below else len(found)


def run_dirs_of(directories: Sequence[Path]) -> tuple[list[Path], int]:
    """The run folders the given folders name: a run's folder as given; a sweep's folder (no run of
    its own, runs below it) as its finished runs, in path order. Also how many of the sweep's runs
    were left out for having failed (error.json) or not finished."""
    out, skipped = [], 0
    for d in map(Path, directories):
        if any((d / f).is_file() for f in (SUMMARY_FILE, ERROR_FILE)) or not run_folders(d, below=True):
            out.append(d)
            continue
        found = sorted({p.parent for name in (SUMMARY_FILE, ERROR_FILE) for p in d.rglob(name)})
        done = [f for f in found if (f / SUMMARY_FILE).is_file() and not (f / ERROR_FILE).is_file()]
        out += done
        skipped += len(found) - len(done)
    return out, skipped


def one_line(text: str, limit: int = 500) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


# The columns of a run folder's tables that drawing and exporting read (mosaic/run/timeline.py,
# mosaic/run/perfetto.py), with their types; a graph run's trace.csv has no stage column (one
# stage) and no times for a request it cancelled.
RUN_TABLE_COLUMNS: dict[str, dict[str, type]] = {
    "sessions.csv": {"worker": int, "model": str, "stage": str, "load_start_s": float, "load_end_s": float,
                     "run_start_s": float, "run_end_s": float, "n_requests": int},
    "trace.csv": {"request_id": str, "model": str, "worker": int, "start_s": float, "first_token_s": float,
                  "finish_s": float, "prompt_tokens": int, "output_tokens": int},
    "queries.csv": {"query_id": str},
}
# What an agent-graph run's tables hold besides (read by compare_graph_runs).
GRAPH_TABLE_COLUMNS: dict[str, dict[str, type]] = {
    "trace.csv": {"layer": int, "status": str, "release_s": float, "cached_tokens": int},
    "queries.csv": {"start_s": float, "finish_s": float, "latency_s": float},
}
# Times are seconds from the run's start and counts are counts: a value outside [0, MAX_VALUE] was
# not written by a run (1e9 s is 30 years; beyond it a trace's microseconds overflow to infinity).
MAX_VALUE = 1e9
# What the title of a drawn run reads from its summary.json, by kind of run.
SUMMARY_KEYS = {"flat": ("workload", "seed", "backend", "workers", "scheduler", "expert_stage_s",
                         "aggregator_stage_s", "end_to_end_s"),
                "graph": ("workload", "seed", "backend", "workers", "topology", "n_queries", "makespan_s",
                          "query_latency_s")}


def table_columns(name: str, graph: bool = False) -> dict[str, type]:
    """The columns (and their kinds) a run's table `name` must hold; `graph`: an agent-graph run's."""
    return {**RUN_TABLE_COLUMNS.get(name, {}), **(GRAPH_TABLE_COLUMNS.get(name, {}) if graph else {})}


def check_table(path: Path, rows: list[dict[str, str]], graph: bool = False) -> None:
    """ValueError, one line naming the file, line and column, where a table a run wrote was
    changed since: no rows, a column missing, or a value not of its column's type or out of range.
    The one check of a run's tables for every reader (drawing, exporting, `mosaic runs`)."""
    columns = table_columns(path.name, graph)
    if not rows:
        raise ValueError(f"{path}: no rows (every finished run writes at least one); the file is damaged: "
                         f"rerun the run")
    missing = [c for c in columns if c not in rows[0]]
    if missing:
        raise ValueError(f"{path}: no column {', '.join(missing)}; not a table this package wrote "
                         f"(or a damaged one): rerun the run")
    for i, row in enumerate(rows):
        # A request that never ran (a graph run cancelled it, or it failed) may have no times.
        blank_ok = row.get("status") not in (None, "", "served") or row.get("error", "") != ""
        for col, kind in columns.items():
            value = row[col]
            if kind is str or (value == "" and blank_ok):
                continue
            if value == "":
                raise ValueError(f"{path}: line {i + 2}, column {col}: empty"
                                 f"{' for a request that was served' if path.name == 'trace.csv' else ''}; "
                                 f"the file is damaged: rerun the run")
            try:
                number = float(value)
                if not math.isfinite(number) or (kind is int and number != int(number)):
                    raise ValueError
            except ValueError:
                raise ValueError(f"{path}: line {i + 2}, column {col}: {value!r} is not "
                                 f"{'an integer' if kind is int else 'a finite number'}; the file is "
                                 f"damaged: rerun the run") from None
            if not 0 <= number <= MAX_VALUE:
                what = "a worker id" if col == "worker" else "seconds from the run's start, or a count"
                raise ValueError(f"{path}: line {i + 2}, column {col}: {value} is outside [0, {MAX_VALUE:g}] "
                                 f"({what}); the file is damaged: rerun the run")


def graph_run(summary: dict[str, Any]) -> bool:
    """Whether a run's outputs are an agent-graph run's (docs/outputs.md): a dense or tree topology,
    or any online run (arrivals other than batch: the MoA pipeline then runs as per-query graphs)."""
    topology = summary.get("topology")
    arrivals = summary.get("arrivals")
    return ((isinstance(topology, dict) and topology.get("kind", "flat") != "flat")
            or (isinstance(arrivals, dict) and arrivals.get("kind", "batch") != "batch"))


def summary_problem(summary: dict[str, Any]) -> str | None:
    """What makes a run's summary.json one this package did not write, in one phrase naming the
    key (None: nothing): a key every reader needs missing, a time of the run not a number in
    [0, MAX_VALUE], workers not a list of workers with their sessions."""
    kind = "graph" if graph_run(summary) else "flat"
    missing = [k for k in SUMMARY_KEYS[kind] if summary.get(k) is None]
    if missing:
        return f"no {', '.join(missing)}; not a summary this package wrote (or a damaged one)"
    for k in SUMMARY_KEYS[kind]:
        v = summary[k]
        if k.endswith("_s") and not isinstance(v, dict) and not (
                isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= MAX_VALUE):
            return f"{k} is {v!r}, not a time in [0, {MAX_VALUE:g}] s"
    workers = summary["workers"]
    if not isinstance(workers, list) or not all(isinstance(w, dict) and isinstance(w.get("sessions"), list)
                                                for w in workers):
        return "workers is not a list of workers, each with its sessions"
    return None


def _check_summary(path: Path, summary: dict[str, Any]) -> None:
    why = summary_problem(summary)
    if why:
        raise ValueError(f"{path}: {why}; the file is damaged: rerun the run")


# A run's table columns that hold times in the order they happen (a session's, a request's).
_TIME_ORDER = (("load_start_s", "load_end_s"), ("run_start_s", "run_end_s"), ("start_s", "first_token_s"),
               ("first_token_s", "finish_s"))


def check_rows_against_summary(directory: Path, rows: dict[str, list[dict[str, str]]], summary: dict[str, Any]) -> None:
    """ValueError, one line naming the file and line, where a run's tables disagree with its
    summary.json or with themselves: a session or request on a worker the run did not have, as many
    sessions as its workers ran (a row doubled or cut), a time running backwards."""
    n_workers = len(summary["workers"])
    for name, table in rows.items():
        for i, row in enumerate(table):
            worker = row.get("worker", "")
            if worker != "" and not float(worker) < n_workers:
                raise ValueError(f"{directory / name}: line {i + 2}: worker {worker}, where the run had "
                                 f"{n_workers} (0-{n_workers - 1}); the file is damaged: rerun the run")
            for a, b in _TIME_ORDER:
                if row.get(a, "") != "" and row.get(b, "") != "" and float(row[b]) < float(row[a]) - 1e-6:
                    raise ValueError(f"{directory / name}: line {i + 2}: {b} {row[b]} before {a} {row[a]}; the "
                                     "file is damaged: rerun the run")
    if "sessions.csv" in rows:
        expected = sum(len(w["sessions"]) for w in summary["workers"])
        if len(rows["sessions.csv"]) != expected:
            raise ValueError(f"{directory / 'sessions.csv'}: {len(rows['sessions.csv'])} sessions, where its "
                             f"summary.json's workers ran {expected}; the file was cut or changed since the run: "
                             "rerun the run")


def read_run_dir(directory: Path, tables: Sequence[str] = ("sessions.csv",)) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """A finished run folder's summary.json and the named CSV tables (as rows of strings, the
    files' own text), for what is drawn or exported from a run of either backend afterwards;
    FileNotFoundError or ValueError, one line naming the file and what is wrong, if it is not one
    (a failed run's folder, a file missing, a column missing or not of its type)."""
    from mosaic.core.serde import loads_strict
    from mosaic.core.tables import read_csv

    directory = Path(directory)
    if (directory / ERROR_FILE).is_file():
        rec = read_failure(directory / ERROR_FILE)
        why = f"{rec.get('stage') or '?'} stage: {one_line(rec.get('error') or rec.get('message') or '?', 200)}"
        raise ValueError(f"{directory} holds a failed run ({why}); nothing to draw: fix it and rerun the run")
    missing = [f for f in (*tables, SUMMARY_FILE) if not (directory / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{directory} is not a finished run folder: no {', '.join(missing)}")
    try:
        summary = loads_strict((directory / SUMMARY_FILE).read_text())
    except ValueError as e:
        raise ValueError(f"{directory / SUMMARY_FILE}: not a summary this package wrote ({e}); rerun the run") from None
    if not isinstance(summary, dict):
        raise ValueError(f"{directory / SUMMARY_FILE}: not a summary this package wrote (a JSON "
                         f"{type(summary).__name__}, not an object); rerun the run")
    _check_summary(directory / SUMMARY_FILE, summary)
    graph = graph_run(summary)
    rows = {}
    for name in tables:
        try:
            rows[name] = read_csv(directory / name)
        except Exception as e:   # pandas' parser errors share no base class but Exception
            raise ValueError(f"{directory / name}: does not read as CSV ({one_line(e, 200)}); the file is "
                             f"damaged: rerun the run") from None
        check_table(directory / name, rows[name], graph)
    if "trace.csv" in rows:
        check_request_count(directory / "trace.csv", len(rows["trace.csv"]), summary)
    check_rows_against_summary(directory, rows, summary)
    return summary, rows


def check_request_count(path: Path, rows: int, summary: dict[str, Any]) -> None:
    """ValueError where a run's trace.csv holds fewer or more requests than its summary.json
    counts (one row per request, expert and aggregator or agent): a cut or mixed file."""
    counts = [summary.get(k) for k in ("n_expert_requests", "n_aggregator_requests")]
    if all(isinstance(c, int) and not isinstance(c, bool) for c in counts) and rows != sum(counts):
        raise ValueError(f"{path}: {rows} requests, where its summary.json counts {sum(counts)}; the file was "
                         "cut or changed since the run: rerun the run")


def debug_tracebacks() -> bool:
    """MOSAIC_DEBUG=1 (or Hydra's HYDRA_FULL_ERROR=1): print an unexpected error's traceback on
    stderr too, not only into error.json."""
    return any(os.environ.get(k, "") not in ("", "0") for k in ("MOSAIC_DEBUG", "HYDRA_FULL_ERROR"))


# ------------------------------------------------------------------ writing files

def write_atomic(path: Path, write: Callable[[IO[Any]], Any], binary: bool = False) -> None:
    """Write `path` through `write(file)` into a temporary file beside it, then rename it into
    place: an error or a signal part-way leaves the previous file (or none), never half of one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}-{os.urandom(3).hex()}")
    try:
        with (open(tmp, "wb") if binary else open(tmp, "w", newline="")) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    write_atomic(path, lambda f: f.write(text))


def write_error(path: Path, e: BaseException,
                fix: str = "free space or write access there, or copy the run folder somewhere writable") -> str | None:
    """One line for a failed write of `path` (what the system said and the fix), or None when
    `e` is not a file-system error. A library that fails while cleaning up after the system's
    error (matplotlib's PDF writer on a full disk) hides it in the exception's context."""
    while e is not None and not isinstance(e, OSError):
        e = e.__cause__ or e.__context__
    if e is None:
        return None
    return f"cannot write {path}: {one_line(e.strerror or str(e))}; {fix}"


def folders_done(failed: int, total: int) -> int:
    """Exit status of a command over run folders that goes on past a broken one: 2 if any failed
    (each said above; with several, how many)."""
    if failed and total > 1:
        print(f"error: {failed} of {total} run folders not done (above)", file=sys.stderr)
    return 2 if failed else 0


# ------------------------------------------------------------------ the run directory

class RunDirError(ConfigError):
    """The run directory cannot be used: not a directory, not writable, or in use by another run
    (exit status 2, before any work)."""


_HELD: dict[str, int] = {}   # resolved directory -> the lock's file descriptor, in this process


def _unusable(directory: Path, what: str, e: OSError) -> RunDirError:
    why = {errno.ENOTDIR: "a path component is a file", errno.EEXIST: "it is a file",
           errno.EACCES: "permission denied", errno.EPERM: "permission denied",
           errno.EROFS: "read-only file system", errno.ENOSPC: "no space left on device"}.get(e.errno)
    try:
        if directory.is_symlink() and not directory.exists():
            why = f"a link to {os.readlink(directory)}, which does not exist"
        elif why is None and directory.is_dir():   # it is there, but takes no new files (/proc, say)
            why = f"files cannot be created in it: {one_line(e.strerror or e)}"
    except OSError:   # a path the system cannot even look at (a name too long, say): e says why
        pass
    return RunDirError(f"{what} {directory} is not a writable directory ({why or one_line(e.strerror or e)}); "
                       f"choose another one")


def check_writable_dir(directory: Path, what: str = "output directory") -> Path:
    """Create `directory` if needed and make sure files can be created in it; RunDirError (one
    line) if not. For outputs written at the end of a long job: check them before it starts."""
    directory = Path(directory)
    check_creatable_dir(directory, what)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".write-check{TMP_MARK}{os.getpid()}"
        probe.write_text("")
        probe.unlink()
        st = os.statvfs(directory)
    except OSError as e:
        raise _unusable(directory, what, e) from None
    free = st.f_bavail * st.f_frsize
    if free < MIN_FREE_BYTES:   # an empty file still fits; the outputs would fail part-way
        raise RunDirError(f"{what} {directory} is on a device with {free // 1024} KiB free; free space there "
                          "or choose another one")
    return directory


def check_creatable_dir(directory: Path, what: str = "output directory") -> None:
    """What check_writable_dir refuses at once (the path is a file, or passes through one), said
    without creating anything: for a check before others that would leave no folder behind."""
    directory = Path(directory)
    try:
        if directory.exists() and not directory.is_dir():
            raise RunDirError(f"{what} {directory} is a file, not a directory; choose another one")
        for parent in directory.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
                return
    except OSError as e:   # a path the system cannot look at (a name too long, say) too
        raise _unusable(directory, what, e) from None


def check_writable_file(path: Path, what: str = "output file") -> Path:
    """The same check for one output file: its folder is usable and the path is not a folder."""
    path = Path(path)
    if path.is_dir():
        raise RunDirError(f"{what} {path} is a directory; give a file name in it")
    check_writable_dir(path.parent, f"{what}'s folder")
    return path


def _lock_owner(path: Path) -> str:
    try:
        pid = path.read_text().strip()
    except OSError:
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""


def _held_key(directory: Path, lock: str) -> str:
    """_HELD's key for `directory`'s `lock`."""
    return f"{os.path.realpath(directory)}\0{lock}"


def held_elsewhere(directory: Path, lock: str = LOCK_FILE) -> str | None:
    """Whether another process holds `directory`'s `lock` now (a single run's .lock, a sweep's
    .sweep.lock): None if not, else how to name the holder (" (pid N)" or ""). Creates nothing."""
    directory = Path(directory)
    if _held_key(directory, lock) in _HELD:
        return None
    try:
        fd = os.open(directory / lock, os.O_RDONLY)
    except OSError:   # no such lock (or none this user can read): nobody is working there
        return None
    try:
        # shared: two probes never refuse each other; a holder's exclusive lock refuses it
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _lock_owner(directory / lock)
    finally:
        os.close(fd)
    return None


@contextmanager
def claim_run_dir(directory: Path, what: str = "run directory", lock: str = LOCK_FILE,
                  clear: bool = True, also: Sequence[str] = ()) -> Iterator[Path]:
    """Own `directory` for one run: check it is a writable directory (creating it), lock it
    against a second run, and remove what an earlier run left there (outputs, error.json,
    unfinished temporary files). RunDirError, one line, if it cannot be used; nothing is removed
    then. Re-entrant within a process: an inner claim of a held directory changes nothing. The lock
    is released, and its file removed, at the end of the block. `clear=False` only locks (a
    sweep's directory, under its own `lock` file name). `also`: more files or folders of an earlier
    run to remove with its outputs (Hydra's .hydra/ and job log, claimed before Hydra writes them)."""
    directory = Path(directory)
    key = _held_key(directory, lock)
    if key in _HELD:
        yield directory
        return
    check_writable_dir(directory, what)
    lock = directory / lock
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise _unusable(directory, what, e) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunDirError(f"{what} {directory} is in use by another run{_lock_owner(lock)}; wait for it "
                              "or choose another directory") from None
        try:   # the previous holder may have removed the file between our open and our lock
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        if clear:
            for name in RUN_FILES:
                (directory / name).unlink(missing_ok=True)
            for tmp in directory.glob(f".*{TMP_MARK}*"):
                tmp.unlink(missing_ok=True)
            for name in also:
                path = directory / name
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)
    except OSError as e:   # an earlier run's file that cannot be removed: not ours to use
        try:
            lock.unlink(missing_ok=True)
        except OSError:
            pass
        os.close(fd)
        if e.filename and Path(e.filename) != directory:   # one entry in the way, not the directory
            raise RunDirError(f"{what} {directory}: {e.filename} is in the way ({one_line(e.strerror or e)}); "
                              "a run writes a file of that name there: remove or rename it, or choose another "
                              "directory") from None
        raise _unusable(directory, what, e) from None
    except BaseException:
        os.close(fd)
        raise
    _HELD[key] = fd
    try:
        yield directory
    finally:
        del _HELD[key]
        try:
            lock.unlink(missing_ok=True)   # while still holding it: a waiting run re-checks the inode
        except OSError:
            pass
        os.close(fd)


# ------------------------------------------------------------------ failure records

def failure_stage(error: BaseException | None, default: str = "run") -> str:
    """Where in a run `error` was raised, from its traceback: "config" (validating the composed
    config), "build" (the run's objects), "expert" / "aggregator" (a stage), else `default`."""
    stage = default
    tb = error.__traceback__ if error is not None else None
    while tb is not None:   # outermost to innermost: the innermost known frame wins
        code, local = tb.tb_frame.f_code, tb.tb_frame.f_locals
        if code.co_name == "typed" and code.co_filename.endswith(os.path.join("run", "builder.py")):
            stage = "config"
        elif code.co_name == "build_run":
            stage = "build"
        elif code.co_name == "run_stage" and local.get("stage") in ("expert", "aggregator"):
            stage = local["stage"]
        tb = tb.tb_next
    return stage


def record_failure(directory: Path, overrides: Sequence[str], error: BaseException | str,
                   exit_code: int, stage: str | None = None, error_type: str | None = None) -> dict[str, Any]:
    """Write `error.json` for a failed run into its directory (atomically); returns what was
    written: the overrides, `error` (one line), `type` (`error_type`, else the exception's class,
    "RunFailed" for a message), `message` (in full), `stage` (STAGES; from the traceback if not
    given), `exit_code`, `traceback` (None for a ConfigError, which is the user's to fix and whose
    message says how, and for a message) and `time`."""
    unexpected = isinstance(error, BaseException) and not isinstance(error, ConfigError)
    message = str(error)
    if isinstance(error, BaseException) and stage is None:
        stage = failure_stage(error)
    rec = {"overrides": list(overrides),
           "error": one_line(f"{type(error).__name__}: {error}" if unexpected else message),
           "type": error_type or (type(error).__name__ if isinstance(error, BaseException) else "RunFailed"),
           "message": message,
           "stage": stage or "run",
           "exit_code": exit_code,
           "traceback": "".join(traceback.format_exception(error)) if unexpected else None,
           "time": time.time()}
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_text_atomic(directory / ERROR_FILE, json.dumps(rec, indent=1, default=str) + "\n")
    return rec


def record_interrupted_jobs(sweep_dir: Path, why: str, exit_code: int) -> int:
    """After a sweep was stopped (SIGTERM, SIGHUP, Ctrl-C): every job folder under `sweep_dir` that
    a job had claimed and left unfinished (its .lock there, no longer held: a launcher's worker
    killed with the sweep) gets the error.json the job could not write, with the job's overrides
    (Hydra's .hydra/overrides.yaml), and loses its stale lock and temporary files. Folders with a
    summary.json or error.json, or still held by a live process, are left alone. Returns how many."""
    import yaml

    sweep_dir = Path(sweep_dir)
    n = 0
    for lock in sorted(sweep_dir.rglob(LOCK_FILE)):
        job = lock.parent
        if (job / SUMMARY_FILE).exists() or (job / ERROR_FILE).exists() or held_elsewhere(job) is not None:
            continue
        try:
            overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) or []
        except (OSError, ValueError):   # yaml's errors are ValueErrors
            overrides = []
        try:
            record_failure(job, [str(o) for o in overrides], f"interrupted by {why}: the sweep was stopped while "
                           "this job ran", exit_code, "run", error_type="Terminated")
            for tmp in job.glob(f".*{TMP_MARK}*"):
                tmp.unlink(missing_ok=True)
            lock.unlink(missing_ok=True)
        except OSError:
            continue
        n += 1
    return n


def clear_failure(directory: Path) -> None:
    """Remove a failure record (claim_run_dir already removes an earlier run's)."""
    (Path(directory) / ERROR_FILE).unlink(missing_ok=True)


def find_failures(sweep_dir: Path, since: float | None = None) -> list[dict[str, Any]]:
    """The failure records under a sweep directory (written at or after `since`, if given), each with
    its job directory under `dir`, in a stable order."""
    out = []
    for path in sorted(Path(sweep_dir).rglob(ERROR_FILE)):
        if since is not None and path.stat().st_mtime < since:
            continue
        out.append({**read_failure(path), "dir": str(path.parent)})
    return out


def read_failure(path: Path) -> dict[str, Any]:
    """A failure record (error.json), or one saying it does not read."""
    try:
        rec = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        return {"overrides": [], "error": f"unreadable failure record ({e})"}
    return rec if isinstance(rec, dict) else {"overrides": [], "error": "unreadable failure record (not an object)"}


def format_failures(failures: Sequence[dict[str, Any]]) -> str:
    lines = [f"{len(failures)} failed job(s):"]
    for f in failures:
        stage = f" (stage: {f['stage']})" if f.get("stage") else ""
        lines.append(f"  {' '.join(f.get('overrides') or []) or '(no overrides)'}\n    {f.get('error')}{stage}\n"
                     f"    in {f['dir']}")
    return "\n".join(lines)
