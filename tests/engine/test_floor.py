"""The step floor (mosaic/engine/floor.py): never above what the engine model takes for the
same session, on both engine schedules and under preemption, nearly exact for one request alone,
and its replica count and busy time as the hand-computed case gives them."""
from dataclasses import replace

import numpy as np
import pytest

from mosaic.engine.floor import StepFloor
from mosaic.profiles import kv_capacity_tokens, load_profiles
from mosaic.engine import run_session, session_engine

PAPER = load_profiles("paper_a100")


def _floor_s(f: StepFloor) -> float:
    """The floor of the whole set as one session (the largest over theta)."""
    steps = max(f.outputs[0] - 1.0, f.min_steps)
    return max(f.warmup_s + fx * steps + g[-1] for fx, g in zip(f.fixed, f.g_cum))


def _batch(rng, n, mean_out, cap=32768):
    outs = np.minimum(cap - 1000, np.ceil(rng.lognormal(np.log(mean_out), 1.0, n))).astype(int)
    prompts = np.minimum(1000, np.ceil(rng.lognormal(np.log(250), 0.8, n))).astype(int)
    return [(str(i), int(p), max(1, int(o))) for i, (p, o) in enumerate(zip(prompts, outs))]


@pytest.mark.parametrize("scheduling, prefix_caching", [("v0", False), ("v1", False), ("v1", True)])
@pytest.mark.parametrize("memory", [80.0, 20.0])   # 20 GiB: a KV cache of ~25k tokens, preemptions
def test_the_floor_never_exceeds_the_engine(scheduling, prefix_caching, memory):
    eng = replace(PAPER.engine, scheduling=scheduling, prefix_caching=prefix_caching)
    rng = np.random.default_rng(1)
    preempted = 0
    for model in ("LlamaR1", "Qwen"):
        prof = PAPER.model(model)
        kv = kv_capacity_tokens(prof, eng, memory)
        for n in (1, 3, 40, 150):
            batch = _batch(rng, n, 1500 if model == "LlamaR1" else 300, cap=min(32768, kv // 3))
            t = run_session(prof, eng, memory, batch)
            e = session_engine(prof, eng, memory)
            for _ in e.run(batch, lambda: 0.0):
                pass
            preempted += e.result.preemptions
            f = StepFloor.of(prof, eng, batch, kv)
            assert _floor_s(f) <= t * (1 + 1e-12), (model, n)
    if memory < 20:
        assert preempted > 0    # the case meant to exercise resumes did preempt


def test_one_request_alone_is_nearly_exact():
    """Alone, a request's steps are its decodes: the floor misses only the prefill."""
    prof = PAPER.model("LlamaR1")
    batch = [("a", 300, 8000)]
    t = run_session(prof, PAPER.engine, 80.0, batch)
    f = StepFloor.of(prof, PAPER.engine, batch)
    assert 0.98 * t <= _floor_s(f) <= t


def test_replicas_and_busy_time_by_hand():
    """Identical requests: every replica pays F per step of the common output and g per request."""
    prof = PAPER.model("Qwen")
    batch = [(str(i), 100, 1001) for i in range(10)]
    f = StepFloor.of(prof, PAPER.engine, batch)
    j = len(f.fixed) - 1                    # theta = 1: F = overhead + least linear, g = per-seq only
    F, g1 = f.fixed[j], f.g_cum[j][0]
    alone = F * 1000 + g1
    assert f.need(alone * 0.999) is None    # not even one request fits
    # Room for 3 requests per replica, by theta = 1's terms alone: at least 4 replicas for 10.
    room = F * 1000 + 3 * g1 + 1e-9
    r, busy = f.need(room)
    assert r >= 4
    assert busy >= r * F * 1000 + 10 * g1 - 1e-9
    r_big, busy_big = f.need(1e6)
    assert r_big == 1 and busy_big == pytest.approx(_floor_s(f))


def test_a_negative_cost_term_claims_no_floor():
    prof = replace(PAPER.model("Qwen"), cost={"token_ms": 0.05, "step_ms": -1.0, "ctx_ms": 1e-5, "len2_ms": 1e-9})
    assert StepFloor.of(prof, PAPER.engine, [("a", 10, 10)]) is None


def test_the_replicas_it_counts_can_hold_the_busy_time_it_claims():
    """Every replica of the model takes at most the slack, so r replicas hold at most r * slack:
    the count the floor returns must be enough for the busy time it returns. One long output and
    many short ones: before, the count came from the short ones' per-token work alone and left the
    long ones' steps out (at 1.1x one long request alone: 2 replicas claimed for 398 s of work)."""
    prof = PAPER.model("LlamaR1")
    batch = [(f"long{i}", 200, 16000) for i in range(4)] + [(str(i), 200, 1000) for i in range(600)]
    f = StepFloor.of(prof, PAPER.engine, batch)
    alone = _floor_s(StepFloor.of(prof, PAPER.engine, batch[:1]))
    for s, least in ((1.1, 3), (1.3, 2), (2.0, 1)):
        r, busy = f.need(alone * s)
        assert busy <= r * alone * s * (1 + 1e-9) and r >= least
    rng = np.random.default_rng(3)
    for _ in range(20):
        b = _batch(rng, int(rng.integers(5, 300)), float(rng.uniform(100, 3000)))
        fb = StepFloor.of(prof, PAPER.engine, b)
        first = _floor_s(StepFloor.of(prof, PAPER.engine, b[:1]))
        for s in (1.1, 1.5, 4.0):
            slack = first * s + fb.warmup_s
            got = fb.need(slack)
            if got is not None:
                assert got[1] <= got[0] * slack * (1 + 1e-9)
