"""Ctrl-C remembered: a flag the run's SIGINT handler sets (mosaic/run/signals.py installs it), so
that code at any layer (the vLLM launcher's wait, a run's steps) can tell that Ctrl-C came even
where its KeyboardInterrupt was lost on the way."""
from __future__ import annotations

# Set by on_sigint (the handler mosaic.run.signals.quiet_interrupt installs) and never cleared: a
# KeyboardInterrupt can be lost on its way up (a library's bare `except:`, as pyomo has dozens, or a
# `finally` that raises something else, as Hydra's config reader can), while the flag is not.
_interrupted = False


def on_sigint(signum, frame):  # noqa: ARG001
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
