"""The `run` command: one MoA workload end to end, `python experiments/run.py scheduler=ilp backend=sim`.

Writes summary.json, plan.json, trace.csv, sessions.csv and queries.csv into Hydra's run directory
(hydra.run.dir=X).

Exit status: 0 when the run finished (a partial request failure is printed and counted in
summary.json), 1 when every request failed, 2 for bad configuration or input, 130 / 143 when
interrupted. A failed run also leaves error.json in its directory. In a sweep (-m) a failed job
records error.json and returns, so the other jobs still run; the sweep lists the failed jobs and
exits 1 at the end (mosaic/run/jobs.py).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from omegaconf import DictConfig

from mosaic.core.errors import ConfigError
from mosaic.run.app import format_table, run, write_outputs
from mosaic.run.jobs import Terminated, clear_failure, one_line, record_failure


def _fail(directory: Path, overrides: Sequence[str], error: BaseException | str, code: int, multirun: bool) -> int:
    """Record the failure and say it on one line; returns the exit code (a sweep job returns 0 so
    that the other jobs still run: the sweep reports it at the end)."""
    record_failure(directory, overrides, error, code)
    text = str(error) if isinstance(error, (str, ConfigError)) else f"{type(error).__name__}: {error}"
    print(f"error: {one_line(text, 2000)}" + (f" (job {' '.join(overrides)})" if multirun else ""),
          file=sys.stderr, flush=True)
    return 0 if multirun else code


def run_job(cfg: DictConfig, directory: Path, overrides: Sequence[str] = (), multirun: bool = False) -> int:
    """One run into `directory`; returns the process exit code. SIGTERM and Ctrl-C propagate (after
    their error.json is written), through the vLLM launcher's clean-up of its worker processes."""
    try:
        out = run(cfg)
        write_outputs(out, directory)
    except ConfigError as e:
        return _fail(directory, overrides, e, 2, multirun)
    except (KeyboardInterrupt, Terminated) as e:  # the launcher has already ended its workers
        why = "SIGTERM" if isinstance(e, Terminated) else "Ctrl-C (SIGINT)"
        record_failure(directory, overrides, f"interrupted by {why}", 143 if isinstance(e, Terminated) else 130)
        print(f"error: interrupted by {why}; no worker or engine process was left running", file=sys.stderr)
        raise
    except Exception as e:  # noqa: BLE001 - one job's bug must not cancel the sweep's others
        if not multirun:
            raise
        return _fail(directory, overrides, e, 1, multirun)
    s = out.summary
    print(format_table(s))
    print(f"outputs: {directory}")
    n = s["n_expert_requests"] + s["n_aggregator_requests"]
    failed = s["n_failed_requests"]
    if failed and failed == n:
        return _fail(directory, overrides, f"all {n} requests failed; first error: {s['first_request_error']}",
                     1, multirun)
    clear_failure(directory)
    if failed:
        print(f"warning: {failed} of {n} requests failed (counted in summary.json); first error: "
              f"{one_line(s['first_request_error'] or '', 2000)}", file=sys.stderr)
    return 0
