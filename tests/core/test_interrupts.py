"""Ctrl-C before a run's own handler is in place (mosaic.core.interrupts.install_early)."""
from __future__ import annotations

import signal
import subprocess
import sys

import pytest

_EARLY = """
import os, signal, time
{ignore}
from mosaic.core.interrupts import install_early
install_early()
os.kill(os.getpid(), signal.SIGINT)
time.sleep(2)
print("went on")
"""


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_a_ctrl_c_during_an_entry_points_imports_is_one_line_and_death_by_sigint():
    p = _run(_EARLY.format(ignore=""))
    assert p.returncode == -signal.SIGINT   # a shell reports 130, as for Python's own handler
    assert p.stderr == "error: interrupted by Ctrl-C (SIGINT)\n", p.stderr
    assert "went on" not in p.stdout


@pytest.mark.slow
def test_an_ignored_sigint_stays_ignored():
    p = _run(_EARLY.format(ignore="signal.signal(signal.SIGINT, signal.SIG_IGN)"))
    assert p.returncode == 0 and "went on" in p.stdout and p.stderr == "", p.stderr


@pytest.mark.parametrize("early", [False, True])
def test_the_runs_handler_takes_over_from_the_early_one_and_gives_it_back(early):
    code = ("import signal\n"
            "from mosaic.core import interrupts\n"
            "from mosaic.cli.signals import quiet_interrupt\n"
            + ("interrupts.install_early()\n" if early else "")
            + "before = signal.getsignal(signal.SIGINT)\n"
              "with quiet_interrupt():\n"
              "    assert signal.getsignal(signal.SIGINT) is interrupts.on_sigint\n"
              "assert signal.getsignal(signal.SIGINT) is before\n"
              "print('default' if before is signal.default_int_handler else 'early')\n")
    p = _run(code)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == ("early" if early else "default")


def test_the_mosaic_command_called_as_a_function_leaves_the_callers_handler(capsys):
    from mosaic.__main__ import main

    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert main(["--help"]) == 0 and main(["nope"]) == 2
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_during_cleanup_is_remembered_not_raised(monkeypatch):
    """A second Ctrl-C cut a Ray shutdown short and left Ray's agents running."""
    import os
    import signal

    from mosaic.core import interrupts

    monkeypatch.setattr(interrupts, "_interrupted", False)
    before = signal.getsignal(signal.SIGINT)
    finished = False
    with interrupts.sigint_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        finished = True
    assert finished and interrupts.interrupted()
    assert signal.getsignal(signal.SIGINT) is before
