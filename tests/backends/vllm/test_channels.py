"""The parent's view of the workers' pipes is one queue: every message of every worker, in each
worker's order; a pipe whose worker is gone ends without holding up the others."""
import queue
import time

import pytest

from mosaic.backends.vllm.channels import WorkerChannels
from mosaic.backends.vllm.procgroup import spawn_context


def test_messages_of_every_worker_arrive_in_order_and_none_starves():
    ctx, ch = spawn_context(), WorkerChannels()
    outs = [ch.open(ctx) for _ in range(2)]
    for i in range(3):
        for w, out in enumerate(outs):
            out.put((w, i))
    got = [ch.get(timeout=1) for _ in range(6)]
    assert [m for m in got if m[0] == 0] == [(0, 0), (0, 1), (0, 2)]
    assert [m for m in got if m[0] == 1] == [(1, 0), (1, 1), (1, 2)]
    assert got[:2] in ([(0, 0), (1, 0)], [(1, 0), (0, 0)])   # reads take turns
    with pytest.raises(queue.Empty):
        ch.get_nowait()
    ch.close()


def test_an_ended_pipe_is_dropped_and_an_empty_wait_still_waits():
    ctx, ch = spawn_context(), WorkerChannels()
    a, b = ch.open(ctx), ch.open(ctx)
    a.put("last words")
    a.conn.close()   # worker a is gone (in one process the parent's copy is the worker's end)
    assert ch.get(timeout=1) == "last words"
    with pytest.raises(queue.Empty):
        ch.get(timeout=0.2)
    assert len(ch.readers) == 1   # a's ended; b's open
    b.conn.close()
    t = time.monotonic()
    with pytest.raises(queue.Empty):
        ch.get(timeout=0.3)
    assert not ch.readers and time.monotonic() - t >= 0.25   # waited as a queue would, no spin
