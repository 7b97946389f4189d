"""Signals as a run handles them: SIGTERM and SIGHUP (a closed terminal or SSH session) unwind like
Ctrl-C (so cleanup runs), and each ends the process with one line on stderr, never a traceback. Imports nothing heavy: the entry points enter
these before importing the run's modules, so a signal during those imports is handled too."""
from __future__ import annotations

import os
import signal
import sys
from contextlib import contextmanager
from typing import Iterator

from mosaic.core import interrupts


# The signals that end a run as SIGTERM does: a kill or a timeout, and a hang-up.
TERMINATING = (signal.SIGTERM, signal.SIGHUP)
_came: int | None = None   # the terminating signal that came (sigterm_as_exit), whatever became of its exception


def sigterm_came() -> bool:
    """Whether SIGTERM (or SIGHUP) came within sigterm_as_exit. Ray's wait turns the exception the
    handler raises inside it into SystemExit(1): the run tells that signal from another exit by this."""
    return _came is not None


def terminated() -> "Terminated":
    """The Terminated of the signal that came (SIGTERM where none did)."""
    return Terminated(128 + (_came or signal.SIGTERM))


class Terminated(SystemExit):
    """SIGTERM or SIGHUP, raised in the main thread so that `finally` blocks (the vLLM launcher's
    cleanup of worker process groups) run as they do for Ctrl-C. Its code is 128 + the signal."""

    @property
    def signal_name(self) -> str:
        try:
            return signal.Signals(int(self.code) - 128).name
        except (TypeError, ValueError):
            return "SIGTERM"


@contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """Within the block, SIGTERM (a timeout, a scheduler's kill) and SIGHUP (the terminal went away)
    unwind the main thread with exit status 128 + the signal (143, 129) instead of ending the
    process on the spot."""
    def handler(signum, frame):  # noqa: ARG001
        global _came
        _came = signum
        raise Terminated(128 + signum)

    try:
        previous = {s: signal.signal(s, handler) for s in TERMINATING}
    except ValueError:  # not the main thread: signals cannot be handled here
        yield
        return
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


class InterruptReported(KeyboardInterrupt):
    """Ctrl-C after the run has said so on stderr and in error.json."""


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
        previous = signal.getsignal(signal.SIGINT)
        if interrupts.replaceable(previous):
            signal.signal(signal.SIGINT, interrupts.on_sigint)
            installed = True
    except ValueError:  # not the main thread
        pass
    try:
        yield
    except Terminated as e:   # SIGTERM or SIGHUP (sigterm_as_exit): exit 143 or 129, said once
        if not getattr(e, "reported", False):
            print(f"error: interrupted by {e.signal_name}", file=sys.stderr, flush=True)
            e.reported = True   # said once, however many of these blocks it passes through
        raise
    except KeyboardInterrupt as e:
        _die_by_sigint(isinstance(e, InterruptReported))
    except BaseException as e:
        if not interrupts.interrupted() or (isinstance(e, SystemExit) and e.code == 130):
            raise
        _die_by_sigint(False)
    else:
        if interrupts.interrupted():
            _die_by_sigint(False)
    finally:
        if installed and signal.getsignal(signal.SIGINT) is interrupts.on_sigint:
            signal.signal(signal.SIGINT, previous)
