"""Process groups for worker processes, so that no engine outlives the run that started it.

Each worker process becomes the leader of its own session (and so of its own process group); the
processes vLLM starts under it (EngineCore and its helpers) inherit that group. Ending a worker
then means signalling its whole group: SIGTERM, a grace period for engines to shut down cleanly,
then SIGKILL for whatever is left. Three paths lead there:

- the launcher, when a run ends, times out, is interrupted (Ctrl-C, or SIGTERM turned into an
  exception by `mosaic.cli.signals.sigterm_as_exit`, as experiments/run.py does) or notices a dead worker;
- the worker itself, when its parent dies without cleaning up (even by SIGKILL): the kernel sends it
  SIGTERM (PR_SET_PDEATHSIG) and its handler ends its group;
- the worker's own SIGTERM handler, whoever sends the signal.

POSIX only (vLLM runs on Linux). Liveness is read from /proc where it exists, so zombies, which no
signal can remove, do not count as survivors.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import time
from pathlib import Path
from typing import Callable

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
DEFAULT_GRACE_S = 10.0


def spawn_context():
    """multiprocessing's spawn context, usable from any process. A spawned child first sets the
    parent's *global* start method (multiprocessing.spawn.get_preparation_data), and in a job of
    Hydra's joblib launcher that is joblib's "loky", which the child cannot find: every worker died
    at start ("cannot find context for 'loky'", all requests failed, exit 1). Such a method is put
    back to spawn for this process first; loky itself uses its own context objects, not the global."""
    import multiprocessing as mp

    if mp.get_start_method(allow_none=True) not in (None, *mp.get_all_start_methods()):
        mp.set_start_method("spawn", force=True)
    # A run that ends by Ctrl-C is killed by SIGINT (mosaic/cli/signals.py), without finalizers: the
    # resource tracker (started with this process's -W options) then frees the queues' semaphores,
    # its job, but also warned about them on the run's stderr, after the run's one line.
    quiet = "ignore:resource_tracker:UserWarning"
    if quiet not in sys.warnoptions:
        sys.warnoptions.append(quiet)
    return mp.get_context("spawn")   # vLLM and CUDA do not survive fork


def _proc_state(pid: int) -> tuple[str, int] | None:
    """(state letter, process group) of a live process from /proc/<pid>/stat, None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may contain spaces and parentheses: fields start after the last ')'.
    fields = stat[stat.rindex(")") + 2:].split()
    return fields[0], int(fields[2])


def pid_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    if Path("/proc").is_dir():
        state = _proc_state(pid)
        return state is not None and state[0] not in ("Z", "X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def group_members(*pgids: int) -> list[int]:
    """Pids of the live (non-zombie) processes in the process groups `pgids`."""
    if not Path("/proc").is_dir():  # pragma: no cover - other POSIX systems: group existence only
        alive = []
        for g in pgids:
            try:
                os.killpg(g, 0)
                alive.append(g)
            except (ProcessLookupError, PermissionError):
                pass
        return alive
    members = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            state = _proc_state(int(entry.name))
            if state is not None and state[1] in pgids and state[0] not in ("Z", "X"):
                members.append(int(entry.name))
    return members


def _signal_group(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def terminate_groups(pgids: list[int], grace_s: float = DEFAULT_GRACE_S, reap: Callable[[], None] | None = None,
                     exclude: int | None = None) -> list[int]:
    """SIGTERM every process of the groups `pgids`, wait up to `grace_s` for them to exit, then
    SIGKILL the rest. `reap` is called while waiting so the caller can collect its own exited
    children (a zombie leader keeps its group id alive). `exclude` is a pid not waited for (a worker
    ending its own group). Returns the pids that had to be killed."""
    signalled = [g for g in pgids if _signal_group(g, signal.SIGTERM)]
    deadline = time.monotonic() + grace_s
    left: list[int] = []
    while signalled:
        if reap is not None:
            reap()
        left = [p for p in group_members(*signalled) if p != exclude]
        if not left or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    if left:
        for g in signalled:
            _signal_group(g, signal.SIGKILL)
        # SIGKILL is delivered asynchronously: wait until the kernel has actually ended them, so a
        # caller that returns "cleaned up" is telling the truth.
        kill_deadline = time.monotonic() + 5.0
        while time.monotonic() < kill_deadline:
            if reap is not None:
                reap()
            if not [p for p in group_members(*signalled) if p != exclude]:
                break
            time.sleep(0.02)
    return left


def _parent_death_signal(sig: int) -> None:
    """Ask the kernel to send `sig` to this process when its parent dies (Linux; a no-op elsewhere)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass


def become_group_leader(grace_s: float = DEFAULT_GRACE_S) -> None:
    """First thing a worker process does: a session (and process group) of its own, so a terminal's
    Ctrl-C reaches only the launcher, which ends the group in order; SIGTERM to the worker ends its
    whole group; and the parent's death, however it happens, sends the worker that SIGTERM."""
    os.setsid()
    parent = os.getppid()

    def end_group(signum, frame):  # noqa: ARG001
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the group signal below reaches us too
        terminate_groups([os.getpgrp()], grace_s, exclude=os.getpid())
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, end_group)
    _parent_death_signal(signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before the request above took effect
        end_group(signal.SIGTERM, None)


def group_leader_entry(grace_s: float, target: Callable[..., None], *args) -> None:
    """A spawned process's entry point: its own process group first, before anything can start a
    child, then `target(*args)`."""
    become_group_leader(grace_s)
    target(*args)


def end_processes(procs: list, wait_s: float, grace_s: float = DEFAULT_GRACE_S) -> None:
    """End multiprocessing processes started with `group_leader_entry`, and everything they started:
    `wait_s` (in all) to exit by themselves, then their groups get SIGTERM, `grace_s`, SIGKILL."""
    deadline = time.monotonic() + wait_s
    for p in procs:
        p.join(timeout=max(0.0, deadline - time.monotonic()))
    terminate_groups([p.pid for p in procs], grace_s, reap=lambda: [p.join(timeout=0) for p in procs])
    for p in procs:
        if p.is_alive():  # started but not yet its own group leader: nothing of its own runs yet
            p.kill()
        p.join(timeout=grace_s)
