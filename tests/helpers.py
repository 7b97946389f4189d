"""Shared test helpers: compose the real Hydra config with overrides; skip what needs ../shared."""
from pathlib import Path

import pytest

from mosaic.run.builder import compose

# The real question sets and traces beside the checkout (CI has them; a fresh clone may not).
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data not present")


def config(*overrides: str):
    """The config `experiments/run.py OVERRIDES` runs with."""
    return compose(overrides)


def drive(engine, requests):
    """Run a simulated engine (mosaic/engine/v0.py, mosaic/engine/v1.py) to the end on its own clock:
    ({request id: its final state}, end time). Every step must take time."""
    clock = [0.0]
    for dt in engine.run(requests, lambda: clock[0]):
        assert dt > 0
        clock[0] += dt
    return {s.rid: s for s in engine.result.seqs}, clock[0]


class UnitCost:
    """A step cost model where every step takes 1 s, so a simulated engine's times are step counts."""

    def step_s(self, tokens, n_seqs, decode_ctx, prefill_attn):
        return 1.0

    def decode_run_s(self, n_seqs, ctx_sum, steps):
        return float(steps)

    def prefill_s(self, tokens, squares, n_seqs):
        return 1.0


# Entry points that moved into the benchmarks tree; every other name is experiments/<name>.py.
ENTRY_MODULES = {"bench_scheduler": "benchmarks.scheduler", "length_signals": "benchmarks.scheduler.length_signals"}


def entry_module(script: str) -> str:
    """The dotted module of a command-line entry point (run with runpy.run_module, as `python -m`)."""
    return ENTRY_MODULES.get(script, f"experiments.{script}")
