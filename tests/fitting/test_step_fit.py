"""The real-engine step fit (mosaic/fitting/real_engine.py) on rows made by a known step model."""
import numpy as np
import pytest

from mosaic.backends.vllm.probe import _replica_steps, merge_workers
from mosaic.fitting.real_engine import fit, fit_error


def _rows(cost, rng, noise=0.0):
    rows = []
    for rep in range(3):
        for n in (1, 4, 16, 64):
            for ctx in (64, 512, 1536):
                ms = cost["step_ms"] + cost["seq_ms"] * n + cost["token_ms"] * n + cost["ctx_ms"] * n * ctx
                rows.append({"kind": "decode", "cell": f"{n}/{ctx}", "rep": rep, "steps": 1, "seqs": n, "tokens": n,
                             "ctx": n * ctx, "attn": 0.0, "ms": ms * (1 + noise * rng.standard_normal())})
        for length in (64, 256, 1024, 2000):
            ms = cost["step_ms"] + cost["seq_ms"] + cost["token_ms"] * length + cost["len2_ms"] * length**2
            rows.append({"kind": "prefill", "cell": str(length), "rep": rep, "steps": 1, "seqs": 1, "tokens": length,
                         "ctx": 0, "attn": float(length**2), "ms": ms * (1 + noise * rng.standard_normal())})
    return rows


def test_fit_recovers_a_known_step_model():
    cost = {"step_ms": 2.0, "seq_ms": 0.03, "token_ms": 0.07, "ctx_ms": 2.7e-4, "len2_ms": 2.3e-5}
    m = {"steps": _rows(cost, np.random.default_rng(0))}
    got = fit(m)
    for k, v in cost.items():
        assert got[k] == pytest.approx(v, rel=1e-6)
    err = fit_error(m, got)
    assert err["decode"]["median"] < 1e-6 and err["prefill"]["n"] == 12


def test_fit_error_reports_the_repeats_noise():
    cost = {"step_ms": 2.0, "seq_ms": 0.03, "token_ms": 0.07, "ctx_ms": 2.7e-4, "len2_ms": 2.3e-5}
    m = {"steps": _rows(cost, np.random.default_rng(1), noise=0.05)}
    err = fit_error(m, fit(m))
    assert 0.01 < err["decode"]["noise"] < 0.1 and 0.01 < err["decode"]["median"] < 0.1
    assert all(v >= 0 for v in fit(m).values())


def test_replica_gives_the_chunked_composition_of_a_prompt_batch():
    # 4 prompts of 512 with a 1024 budget: two steps of two whole prompts each
    steps = _replica_steps([(str(i), 512, 1) for i in range(4)], block_size=16, kv_blocks=1000, max_num_seqs=8,
                           budget=1024)
    assert steps == [(2, 1024, 0, 2 * 512.0**2)] * 2
    # one 3000-token prompt with a 2048 budget: a chunk of 2048, then the rest attending to it
    steps = _replica_steps([("a", 3000, 1)], block_size=16, kv_blocks=1000, max_num_seqs=8, budget=2048)
    assert steps == [(1, 2048, 0, 2048.0**2), (1, 952, 0, 3000.0**2 - 2048.0**2)]


def test_workers_measured_together_are_merged():
    a = {"startup_s": 1.0, "load_time_s": 10.0, "unload_time_s": 2.0, "submit_ms": 1.0, "warm": {"ms": 300.0}, "steps": [{"ms": 1}], "sessions": [], "x": 1}
    b = {"startup_s": 3.0, "load_time_s": 14.0, "unload_time_s": 4.0, "submit_ms": 3.0, "warm": {"ms": 500.0}, "steps": [{"ms": 2}], "sessions": [], "x": 1}
    m = merge_workers([a, b])
    assert m["load_time_s"] == 12.0 and m["workers"] == 2 and [r["worker"] for r in m["steps"]] == [0, 1]


def test_warmup_is_the_first_requests_time_beyond_the_step_model():
    from mosaic.backends.vllm.probe import WARM, window_terms
    from mosaic.profiles.calibration import warmup_s

    cost = {"step_ms": 2.0, "seq_ms": 0.0, "token_ms": 0.0, "ctx_ms": 0.0, "len2_ms": 0.0}
    steps = window_terms(_replica_steps([("warm", *WARM)], block_size=16, kv_blocks=100, max_num_seqs=8, budget=512))
    assert steps == {"steps": 8.0, "seqs": 8.0, "tokens": 64.0 + 7, "ctx": float(sum(range(65, 72))), "attn": 64.0**2}
    warm = [{**steps, "ms": 216.0}, {**steps, "ms": 116.0}]
    assert warmup_s({"warm": warm}, cost) == pytest.approx(0.150)   # 8 steps of 2 ms predicted
    assert warmup_s({"warm": [{**steps, "ms": 1.0}]}, cost) == 0.0
