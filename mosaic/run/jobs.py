"""What a run leaves behind when it fails, and how a sweep finds out.

A job of a sweep must not take the other jobs down: Hydra's sweeper re-raises the first failed
job's exception once its batch is done (and a SystemExit inside a joblib worker cancels the jobs
still running), so the other jobs' results and the failure summary would be lost. Instead a job
that fails writes `error.json` into its own directory and returns normally; the sweep, and
experiments/reproduce.py, then list every failed job and exit non-zero.
"""
from __future__ import annotations

import json
import signal
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from mosaic.core.errors import ConfigError

ERROR_FILE = "error.json"


def one_line(text: str, limit: int = 500) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def record_failure(directory: Path, overrides: Sequence[str], error: BaseException | str,
                   exit_code: int) -> dict[str, Any]:
    """Write `error.json` for a failed run into its directory; returns what was written. A
    ConfigError is the user's to fix and its message says how; anything else keeps its traceback."""
    unexpected = isinstance(error, BaseException) and not isinstance(error, ConfigError)
    rec = {"overrides": list(overrides),
           "error": one_line(f"{type(error).__name__}: {error}" if unexpected else str(error)),
           "type": type(error).__name__ if isinstance(error, BaseException) else "RunFailed",
           "exit_code": exit_code,
           "traceback": "".join(traceback.format_exception(error)) if unexpected else None,
           "time": time.time()}
    directory.mkdir(parents=True, exist_ok=True)
    (directory / ERROR_FILE).write_text(json.dumps(rec, indent=1) + "\n")
    return rec


def clear_failure(directory: Path) -> None:
    """A run that succeeds in a directory where an earlier one failed removes the stale record."""
    (directory / ERROR_FILE).unlink(missing_ok=True)


def find_failures(sweep_dir: Path, since: float | None = None) -> list[dict[str, Any]]:
    """The failure records under a sweep directory (written at or after `since`, if given), each with
    its job directory under `dir`, in a stable order."""
    out = []
    for path in sorted(Path(sweep_dir).rglob(ERROR_FILE)):
        if since is not None and path.stat().st_mtime < since:
            continue
        try:
            rec = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            rec = {"overrides": [], "error": f"unreadable failure record ({e})"}
        out.append({**rec, "dir": str(path.parent)})
    return out


def format_failures(failures: Sequence[dict[str, Any]]) -> str:
    lines = [f"{len(failures)} failed job(s):"]
    for f in failures:
        lines.append(f"  {' '.join(f.get('overrides') or []) or '(no overrides)'}\n    {f.get('error')}\n"
                     f"    in {f['dir']}")
    return "\n".join(lines)


class ReportFailedJobs(Callback):
    """Hydra callback (conf/config.yaml: hydra.callbacks): after a multirun, list the jobs that
    recorded a failure and exit with status 1, so `run.py -m` does not report success."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.start = time.time() - 1.0  # file times have coarse resolution on some filesystems

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        failures = find_failures(Path(config.hydra.sweep.dir), getattr(self, "start", None))
        if failures:
            print(format_failures(failures), flush=True)
            raise SystemExit(1)


class Terminated(SystemExit):
    """SIGTERM, raised in the main thread so that `finally` blocks (the vLLM launcher's cleanup of
    worker process groups) run as they do for Ctrl-C."""


@contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """Within the block, SIGTERM (a timeout, a scheduler's kill) unwinds the main thread with
    exit status 143 (128 + SIGTERM) instead of ending the process on the spot."""
    def handler(signum, frame):  # noqa: ARG001
        raise Terminated(128 + signum)

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: signals cannot be handled here
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
