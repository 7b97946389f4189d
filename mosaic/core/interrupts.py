"""Ctrl-C remembered: a flag the run's SIGINT handler sets (mosaic/cli/signals.py installs it), so
that code at any layer (the vLLM launcher's wait, a run's steps) can tell that Ctrl-C came even
where its KeyboardInterrupt was lost on the way."""
from __future__ import annotations

import os
import signal
from contextlib import contextmanager
from typing import Iterator

# Set by on_sigint (the handler mosaic.cli.signals.quiet_interrupt installs) and never cleared: a
# KeyboardInterrupt can be lost on its way up (a library's bare `except:`, as pyomo has dozens, or a
# `finally` that raises something else, as Hydra's config reader can), while the flag is not.
_interrupted = False


def on_sigint(signum, frame):  # noqa: ARG001
    global _interrupted
    _interrupted = True
    raise KeyboardInterrupt


@contextmanager
def sigint_deferred() -> Iterator[None]:
    """Within the block (cleanup that must finish: ending a Ray instance's processes), Ctrl-C is
    remembered (`interrupted()`) instead of raised, so a second Ctrl-C cannot cut the cleanup short
    and leave processes behind; the run ends by the first one, or by the flag afterwards."""
    try:
        previous = signal.getsignal(signal.SIGINT)
        signal.signal(signal.SIGINT, _remember_sigint)
    except ValueError:  # not the main thread: no signal comes here
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _remember_sigint(signum, frame):  # noqa: ARG001
    global _interrupted
    _interrupted = True


def interrupted() -> bool:
    """Whether Ctrl-C has been pressed within quiet_interrupt, whatever became of its exception."""
    return _interrupted


def raise_if_interrupted() -> None:
    """Raise KeyboardInterrupt if a Ctrl-C came and its exception was swallowed. Long waits (the vLLM
    launcher's poll loop) and the steps of a run call this, so that a run ends rather than going
    on, or waiting forever on workers, after a Ctrl-C that arrived during an import."""
    if _interrupted:
        raise KeyboardInterrupt


def _sigint_before_run(signum, frame):  # noqa: ARG001
    os.write(2, b"error: interrupted by Ctrl-C (SIGINT)\n")
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGINT)


def install_early() -> bool:
    """For an entry point's first lines: until quiet_interrupt takes over, Ctrl-C ends the process at
    once, killed by SIGINT with one line, instead of a traceback from whichever import it hit (the
    imports of mosaic.cli.signals itself take ~10 ms). Only where SIGINT has Python's default
    handler: an ignored SIGINT (a job started with `&`) stays ignored. Returns whether it was
    installed (for uninstall_early)."""
    try:
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, _sigint_before_run)
            return True
    except ValueError:  # not the main thread
        pass
    return False


def uninstall_early(installed: bool) -> None:
    """Python's default SIGINT handler back, where install_early put its own (an entry point called
    as a function, e.g. mosaic.__main__.main from a test or a notebook, leaves the caller's)."""
    if installed and signal.getsignal(signal.SIGINT) is _sigint_before_run:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def replaceable(handler: object) -> bool:
    """Whether a run may put its own SIGINT handler in place of `handler`: Python's default, or the
    start-up one above."""
    return handler is signal.default_int_handler or handler is _sigint_before_run
