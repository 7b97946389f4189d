"""One job of the `run` command (`mosaic run scheduler=ilp`): the run directory claimed, the run
built and executed, its outputs written, every failure recorded.

Writes summary.json, plan.json, trace.csv, sessions.csv and queries.csv into Hydra's run directory
(hydra.run.dir=X), each atomically and summary.json last.

Exit status: 0 when the run finished (a partial request failure is printed and counted in
summary.json); 1 when every request failed (or, in an agent-graph run, every query's aggregator), or
on an unexpected error (its traceback goes to error.json; on stderr too with MOSAIC_DEBUG=1 or
HYDRA_FULL_ERROR=1); 2 for bad configuration or input, Hydra's own config errors (an unknown group
option, a value of the wrong type, a key the config does not have) and an unusable run directory (a
file, not writable, or in use by another run), all before any work; 130 / 143 / 129 when interrupted (Ctrl-C, SIGTERM, SIGHUP).
Errors are one line on stderr. A failed run leaves error.json in its directory (type, message,
stage, exit code) except where the directory itself is the problem, or Hydra's config error leaves
no directory to name. In a sweep (-m) a failed job records error.json and returns, so the other jobs
still run; the sweep lists the failed jobs and exits 1 at the end (mosaic/cli/callbacks.py).
"""
from __future__ import annotations

import errno
import os
import sys
import time
import traceback
from contextlib import ExitStack
from pathlib import Path
from typing import NoReturn, Sequence

from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from mosaic.config.mappings import replace_given
from mosaic.core.errors import ConfigError
from mosaic.core.interrupts import interrupted, raise_if_interrupted
from mosaic.core.rundir import (RunDirError, claim_run_dir, debug_tracebacks, failure_stage,
                             one_line, record_failure)
from mosaic.cli.precheck import check_overrides
from mosaic.cli.signals import InterruptReported, Terminated, sigterm_came, terminated

# --------------------------------------------------------------------------------- one job


def _say(line: str, overrides: Sequence[str], multirun: bool) -> None:
    print(f"error: {one_line(line, 2000)}" + (f" (job {' '.join(overrides)})" if multirun else ""),
          file=sys.stderr, flush=True)


# Write failures that say what is wrong with the disk, not with the run: one line, no traceback.
DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG)


def _fail(directory: Path, overrides: Sequence[str], error: BaseException | str, code: int, multirun: bool,
          stage: str) -> int:
    """Record the failure and say it on one line; returns the exit code (a sweep job returns 0 so
    that the other jobs still run: the sweep reports it at the end)."""
    unexpected = isinstance(error, BaseException) and not isinstance(error, ConfigError)
    if isinstance(error, OmegaConfBaseException) and stage == "config":
        unexpected = False
    where = ""
    try:
        record_failure(directory, overrides, error, code, stage)
        if unexpected:
            where = f" (stage {stage}; traceback in {directory / 'error.json'})"
    except OSError as e:
        where = f" (error.json not written: {one_line(e, 200)})"
    if unexpected and debug_tracebacks():
        traceback.print_exception(error, file=sys.stderr)
    if isinstance(error, OmegaConfBaseException):
        text = _omegaconf_message(error)
    elif unexpected:
        text = f"{type(error).__name__}: {error}"
    else:
        text = str(error)
    _say(one_line(text, 1500) + where, overrides, multirun)
    return 0 if multirun else code


def _refused(directory: Path, overrides: Sequence[str], error: RunDirError, multirun: bool) -> int:
    """The run directory cannot be ours: nothing was run, nothing is written there. A sweep job
    records its failure beside it instead, so the sweep still lists it."""
    if multirun:
        try:
            record_failure(directory.parent / f"{directory.name}.refused-{os.getpid()}", overrides, error, 2,
                           "outputs")
        except OSError:
            pass
    _say(str(error), overrides, multirun)
    return 0 if multirun else 2


def run_job(cfg: DictConfig, directory: Path, overrides: Sequence[str] = (), multirun: bool = False) -> int:
    """One run into `directory`; returns the process exit code. The directory is claimed first
    (checked, locked, an earlier run's outputs and error.json removed: mosaic/core/rundir.py), before
    the workload is built. Every failure writes error.json with its stage. SIGTERM and Ctrl-C
    propagate (after their error.json is written), through the vLLM launcher's clean-up of its
    worker processes."""
    directory = Path(directory)
    claim = ExitStack()
    try:
        claim.enter_context(claim_run_dir(directory))
    except RunDirError as e:
        return _refused(directory, overrides, e, multirun)
    with claim:
        return _run_claimed(cfg, directory, overrides, multirun)


def _run_claimed(cfg: DictConfig, directory: Path, overrides: Sequence[str], multirun: bool) -> int:
    stage = "config"
    started = time.time()
    try:
        # Here, not at the top: `--help` and a sweep's launcher need only the command line, and these
        # pull in the solver, SciPy and the backends. In the try: a Ctrl-C during them is recorded.
        from mosaic.run.app import format_table, run, write_outputs
        from mosaic.run.builder import typed
        from mosaic.run.provenance import provenance

        raise_if_interrupted()   # here and below: a Ctrl-C whose exception a library swallowed
        check_overrides(overrides)
        # every setting validated (ConfigError, or OmegaConf's, is exit 2), on the config as given:
        # Hydra merged a mapping given whole into the preset's (mosaic/config/mappings.py)
        c = typed(replace_given(cfg, overrides))
        stage = "run"
        out = run(c)             # build, expert stage, aggregator stage
        stage = "outputs"
        raise_if_interrupted()
        out.summary["provenance"] = provenance(cfg, overrides, started, time.time() - started)
        write_outputs(out, directory)
    except (KeyboardInterrupt, Terminated) as e:  # the launcher has already ended its workers
        _interrupted_run(directory, overrides, e, failure_stage(e, stage))
    except SystemExit as e:   # SIGTERM's exception as a library turned it (Ray's wait: SystemExit(1))
        if not sigterm_came():
            raise
        _interrupted_run(directory, overrides, terminated(), failure_stage(e, stage))
    except Exception as e:  # noqa: BLE001 - recorded with its traceback, exit 1 (a sweep's other jobs go on)
        if interrupted():   # a KeyboardInterrupt that a library turned into another error
            _interrupted_run(directory, overrides, KeyboardInterrupt(), failure_stage(e, stage))
        if isinstance(e, ConfigError):
            return _fail(directory, overrides, e, 2, multirun, failure_stage(e, stage))
        if isinstance(e, OmegaConfBaseException):
            return _fail(directory, overrides, e, 2 if stage == "config" else 1, multirun, failure_stage(e, stage))
        if isinstance(e, OSError) and e.errno in DISK_ERRORS:   # the machine's to fix, not a bug
            what = f"{e.filename}" if e.filename else f"the run's outputs in {directory}"
            return _fail(directory, overrides, f"could not write {what}: {e.strerror or e}; free space on that device "
                         "or choose another hydra.run.dir", 1, multirun, failure_stage(e, stage))
        return _fail(directory, overrides, e, 1, multirun, failure_stage(e, stage))
    s = out.summary
    table = format_table(s)
    print(table)
    print(f"outputs: {directory}")
    # run.log (Hydra's job log) keeps the summary beside the run's warnings; written here, not
    # logged, so the console shows the table once and without log prefixes.
    with open(Path(directory) / "run.log", "a", encoding="utf-8") as f:
        f.write(table + "\n")
    n = s["n_expert_requests"] + s["n_aggregator_requests"]
    failed = s["n_failed_requests"]
    if failed and failed == n:   # the outputs stay for inspection; error.json marks the run failed
        return _fail(directory, overrides, f"all {n} requests failed; first error: {s['first_request_error']}",
                     1, multirun, "run")
    unanswered = s.get("n_unanswered_queries")   # agent graphs: queries whose aggregator failed
    if unanswered and unanswered == s["n_queries"]:
        return _fail(directory, overrides, f"all {unanswered} queries were left without an answer ({failed} of {n} "
                     f"requests failed); first error: {s['first_request_error']}", 1, multirun, "run")
    if failed:
        print(f"warning: {failed} of {n} requests failed (counted in summary.json); first error: "
              f"{one_line(s['first_request_error'] or '', 2000)}", file=sys.stderr)
    return 0


def _interrupted_run(directory: Path, overrides: Sequence[str], e: BaseException, stage: str) -> NoReturn:
    """Ctrl-C, SIGTERM or SIGHUP: error.json and one line, then it propagates (quiet_interrupt ends the process)."""
    why = e.signal_name if isinstance(e, Terminated) else "Ctrl-C (SIGINT)"
    try:
        record_failure(directory, overrides, f"interrupted by {why}", int(e.code) if isinstance(e, Terminated) else 130,
                       stage, error_type=type(e).__name__)
    except OSError:
        pass
    print(f"error: interrupted by {why}; no worker or engine process was left running", file=sys.stderr)
    if not isinstance(e, Terminated):
        raise InterruptReported from None
    e.reported = True
    raise e


def _omegaconf_message(e: OmegaConfBaseException) -> str:
    """OmegaConf's message without its full_key / object_type lines, naming the key."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    keep = [ln for ln in lines if not ln.startswith(("full_key:", "reference_type=", "object_type="))]
    key = getattr(e, "full_key", None)
    text = "; ".join(keep) or type(e).__name__
    return f"{key}: {text}" if key and key not in text else text
