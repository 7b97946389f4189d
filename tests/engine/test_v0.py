"""The fast-forward engine must match a naive one-step-at-a-time engine exactly."""
import random
from collections import deque

import pytest

from mosaic.engine import CostModel
from mosaic.engine.v0 import BatchEngine
from tests.helpers import drive


def reference(cost, cap, max_seqs, max_tokens, requests, watermark=0.01):
    """Step-by-step vLLM-V0-style engine: the semantics BatchEngine must reproduce."""
    seqs = [dict(rid=r, prompt=p, target=t, gen=0, start=None, ft=None, fin=None) for r, p, t in requests]
    waiting, running, t = deque(seqs), [], 0.0
    reserve = int(watermark * cap)
    while waiting or running:
        used = sum(s["prompt"] + s["gen"] for s in running)
        admitted, tokens = [], 0
        while waiting and len(running) + len(admitted) < max_seqs:
            s = waiting[0]
            ctx = s["prompt"] + s["gen"]
            if used + ctx + 1 + reserve > cap or (admitted and tokens + ctx > max_tokens):
                break
            admitted.append(waiting.popleft())
            used += ctx + 1
            tokens += ctx
        if admitted:
            t0 = t
            t += cost.prefill_s(tokens, float(sum((s["prompt"] + s["gen"]) ** 2 for s in admitted)), len(admitted))
            for s in admitted:
                s["start"] = t0 if s["start"] is None else s["start"]
                s["gen"] += 1
                s["ft"] = t if s["ft"] is None else s["ft"]
                if s["gen"] >= s["target"]:
                    s["fin"] = t
                else:
                    running.append(s)
            continue
        n = len(running)
        used = sum(s["prompt"] + s["gen"] for s in running)
        if used + n > cap:
            waiting.appendleft(running.pop())
            continue
        t += cost.decode_run_s(n, used, 1)
        for s in list(running):
            s["gen"] += 1
            if s["gen"] >= s["target"]:
                s["fin"] = t
                running.remove(s)
    return {s["rid"]: s for s in seqs}, t


@pytest.fixture
def cost(profiles):
    return CostModel(profiles.model("LlamaR1"), profiles.engine)


def test_single_request_timing_is_prefill_then_decode(cost):
    eng = BatchEngine(cost, kv_capacity=100_000, max_num_seqs=8, max_num_batched_tokens=4096)
    seqs, end = drive(eng, [("a", 10, 5)])
    a = seqs["a"]
    prefill = cost.prefill_s(10, 100.0, 1)
    assert a.start == 0.0
    assert a.first_token == pytest.approx(prefill)
    # 4 more tokens decoded with contexts 11, 12, 13, 14.
    decode = sum(cost.decode_base_s(1) + cost.decode_ms_per_ctx_token * c / 1e3 for c in (11, 12, 13, 14))
    assert a.finish == pytest.approx(prefill + decode)
    assert end == pytest.approx(a.finish)


def test_one_token_request_finishes_at_prefill(cost):
    eng = BatchEngine(cost, 100_000, 8, 4096)
    seqs, _ = drive(eng, [("a", 50, 1)])
    assert seqs["a"].finish == seqs["a"].first_token


@pytest.mark.parametrize("seed", range(12))
def test_fast_forward_matches_step_by_step(cost, seed):
    rng = random.Random(seed)
    n = rng.randint(1, 40)
    reqs = [(f"r{i}", rng.randint(1, 300), rng.randint(1, 400)) for i in range(n)]
    longest = max(p + t for _, p, t in reqs)
    # Small KV caches force preemptions; slots and token budget force queueing.
    cap = rng.choice([longest + 50, 2 * longest, 5 * longest, 10**6])
    max_seqs, max_tok = rng.choice([2, 4, 16, 256]), rng.choice([256, 600, 8192])
    eng = BatchEngine(cost, cap, max_seqs, max_tok, watermark=0.0)
    fast, fast_end = drive(eng, reqs)
    ref, ref_end = reference(cost, cap, max_seqs, max_tok, reqs, watermark=0.0)
    assert fast_end == pytest.approx(ref_end, rel=1e-9)
    for rid, s in ref.items():
        f = fast[rid]
        assert f.generated == s["target"]
        assert (f.start, f.first_token, f.finish) == pytest.approx((s["start"], s["ft"], s["fin"]), rel=1e-9)


def test_kv_pressure_preempts_but_every_request_completes(cost):
    reqs = [(f"r{i}", 100, 500) for i in range(20)]
    eng = BatchEngine(cost, kv_capacity=3000, max_num_seqs=256, max_num_batched_tokens=8192)
    seqs, _ = drive(eng, reqs)
    assert eng.result.preemptions > 0
    for s in seqs.values():
        assert s.generated == 500
        assert s.start <= s.first_token <= s.finish


def test_batching_beats_serial_execution(cost):
    reqs = [(f"r{i}", 100, 200) for i in range(64)]
    _, batched = drive(BatchEngine(cost, 10**6, 256, 8192), reqs)
    _, serial = drive(BatchEngine(cost, 10**6, 1, 8192), reqs)
    assert batched < serial / 10
