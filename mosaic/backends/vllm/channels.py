"""The channel each local worker process reports on: a pipe of its own, not one queue shared by all.

Why not one `multiprocessing.Queue` for every worker: its writers share one lock, held by a
writer's feeder thread while it writes a message. A worker that dies in that moment (an engine
crash, an OOM kill, `os._exit`) takes the lock with it, and every other worker's messages wait
behind it forever: the run hangs until its timeout with workers that are alive and done. With a
pipe per worker, a dying writer can cut short only its own last message, which the parent reads as
the end of that worker's channel.

The parent side (`WorkerChannels`) reads whichever pipes have something, as one queue: `get` with
a timeout and `get_nowait`, raising `queue.Empty` as a queue does. The worker side (`ChannelOut`)
has the queue's `put`, so a worker target runs unchanged on either.
"""
from __future__ import annotations

import queue as queue_mod
import time
from multiprocessing.connection import Connection, wait
from typing import Any


class ChannelOut:
    """A worker's end: `put` sends one message (a picklable object) to the parent at once."""

    def __init__(self, conn: Connection):
        self.conn = conn

    def put(self, msg: Any) -> None:
        self.conn.send(msg)


class WorkerChannels:
    """The parent's end of every worker's pipe. `open(ctx)` makes one pipe and returns the worker's
    end to pass to the process; `started()` drops the parent's copy of that end once the process
    holds its own, so that the pipe ends (EOF) when the worker does."""

    def __init__(self) -> None:
        self.readers: list[Connection] = []
        self._writers: list[Connection] = []
        self._next = 0   # where the next read looks first: no busy worker starves the others

    def open(self, ctx) -> ChannelOut:
        reader, writer = ctx.Pipe(duplex=False)
        self.readers.append(reader)
        self._writers.append(writer)
        return ChannelOut(writer)

    def started(self) -> None:
        for w in self._writers:
            w.close()
        self._writers = []

    def get(self, timeout: float | None = None) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.readers:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready = wait(self.readers, left)
            if not ready:
                break
            msg = self._read(ready)
            if msg is not None:
                return msg
        else:   # every worker's pipe has ended: wait as a queue would, not spin
            if deadline is not None:
                time.sleep(max(0.0, deadline - time.monotonic()))
        raise queue_mod.Empty

    def get_nowait(self) -> Any:
        return self.get(timeout=0.0)

    def _read(self, ready: list) -> Any:
        """One message from the first ready pipe at or after `_next`; None where that pipe has
        ended (its worker is gone: an end, or a message cut short by its death)."""
        order = self.readers[self._next:] + self.readers[:self._next]
        conn = next(c for c in order if c in ready)
        i = self.readers.index(conn)
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            conn.close()
            self.readers.pop(i)
            self._next = i % len(self.readers) if self.readers else 0
            return None
        self._next = (i + 1) % len(self.readers)
        return msg

    def close(self) -> None:
        self.started()
        for r in self.readers:
            r.close()
        self.readers = []
