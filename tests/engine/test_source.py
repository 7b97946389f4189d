"""Late binding in the engines: a V0 or V1 engine taking its requests from a source, one free slot
at a time, schedules exactly as one given them all at once (both admit in queue order), reports
each finish to the source, and takes nothing the KV cannot hold."""
import pytest

from mosaic.engine.v0 import BatchEngine
from mosaic.engine.v1 import V1Engine
from tests.helpers import UnitCost


class Feed:
    def __init__(self, requests, refuse_over=None):
        self.left = list(requests)
        self.done_at = {}
        self.asked_with_room = 0

    def take(self, fits):
        if not self.left or not fits(self.left[0][1]):
            return None
        return self.left.pop(0)

    def done(self, rid, t):
        self.done_at[rid] = t


def run(engine, requests=(), source=None):
    clock = [0.0]
    for dt in engine.run(list(requests), lambda: clock[0], source=source):
        clock[0] += dt
    return {s.rid: (s.start, s.first_token, s.finish) for s in engine.result.seqs}, clock[0]


REQS = [(f"r{i}", 5 + (7 * i) % 23, 1 + (11 * i) % 17) for i in range(40)]


@pytest.mark.parametrize("make", [
    lambda: BatchEngine(UnitCost(), kv_capacity=400, max_num_seqs=6, max_num_batched_tokens=64),
    lambda: V1Engine(UnitCost(), kv_blocks=30, block_size=4, max_num_seqs=6, max_num_batched_tokens=32),
], ids=["v0", "v1"])
def test_a_source_schedules_as_the_whole_batch_does(make):
    at_once, end = run(make(), REQS)
    feed = Feed(REQS)
    pulled, end2 = run(make(), source=feed)
    assert pulled == at_once and end2 == end
    assert feed.done_at == {rid: times[2] for rid, times in at_once.items()}


def test_a_source_keeps_a_request_the_kv_cannot_hold():
    # a 9-block prompt with 8 of 11 blocks free: the engine never takes it while the small ones run
    eng = V1Engine(UnitCost(), kv_blocks=11, block_size=4, max_num_seqs=4, max_num_batched_tokens=64)
    seen = []

    class Picky(Feed):
        def take(self, fits):
            if self.left:
                seen.append((self.left[0][0], fits(self.left[0][1])))
            return super().take(fits)

    feed = Picky([("small", 12, 30), ("big", 36, 2)])
    got, _ = run(eng, source=feed)
    assert ("big", False) in seen and set(got) == {"small", "big"}
    assert got["big"][0] >= got["small"][2]   # admitted once the small one left
