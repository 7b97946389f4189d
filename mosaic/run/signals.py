"""Signals as a run handles them: SIGTERM unwinds like Ctrl-C (so cleanup runs), and either ends the
process with one line on stderr, never a traceback. Imports nothing heavy: the entry points enter
these before importing the run's modules, so a signal during those imports is handled too."""
from __future__ import annotations

import os
import signal
import sys
from contextlib import contextmanager
from typing import Iterator


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


class InterruptReported(KeyboardInterrupt):
    """Ctrl-C after the run has said so on stderr and in error.json."""


# Set by the SIGINT handler quiet_interrupt installs, and never cleared: a KeyboardInterrupt can be
# lost on its way up (a library's bare `except:`, as pyomo has dozens, or a `finally` that raises
# something else, as Hydra's config reader can), while the flag is not.
_interrupted = False


def _on_sigint(signum, frame):  # noqa: ARG001
    global _interrupted
    _interrupted = True
    raise KeyboardInterrupt


def interrupted() -> bool:
    """Whether Ctrl-C has been pressed within quiet_interrupt, whatever became of its exception."""
    return _interrupted


def raise_if_interrupted() -> None:
    """Raise KeyboardInterrupt if a Ctrl-C came and its exception was swallowed. Long waits (the vLLM
    launcher's poll loop) and the steps of a run call this, so that a run ends rather than going
    on, or waiting forever on workers, after a Ctrl-C that arrived during an import."""
    if _interrupted:
        raise KeyboardInterrupt


def _die_by_sigint(reported: bool) -> None:
    if not reported:
        print("error: interrupted by Ctrl-C (SIGINT)", file=sys.stderr, flush=True)
    sys.stderr.flush()
    sys.stdout.flush()
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGINT)
    raise SystemExit(130) from None   # if SIGINT could not end the process


@contextmanager
def quiet_interrupt() -> Iterator[None]:
    """Ctrl-C ends the process as Python's own handler would (killed by SIGINT: the shell sees
    130, and a calling script sees the signal), with one line on stderr instead of a traceback;
    also when a library turned its KeyboardInterrupt into another error, or swallowed it and the
    block ended anyway. Where SIGINT is ignored (a job started with `&`), it stays ignored."""
    installed = False
    try:
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, _on_sigint)
            installed = True
    except ValueError:  # not the main thread
        pass
    try:
        yield
    except Terminated as e:   # SIGTERM (sigterm_as_exit): exit 143, said once
        if not getattr(e, "reported", False):
            print("error: interrupted by SIGTERM", file=sys.stderr, flush=True)
            e.reported = True   # said once, however many of these blocks it passes through
        raise
    except KeyboardInterrupt as e:
        _die_by_sigint(isinstance(e, InterruptReported))
    except BaseException as e:
        if not _interrupted or (isinstance(e, SystemExit) and e.code == 130):
            raise
        _die_by_sigint(False)
    else:
        if _interrupted:
            _die_by_sigint(False)
    finally:
        if installed and signal.getsignal(signal.SIGINT) is _on_sigint:
            signal.signal(signal.SIGINT, signal.default_int_handler)
