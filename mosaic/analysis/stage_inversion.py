"""What a reported stage wall implies about the stage's output lengths, under our engine model.

The paper gives its aggregator-stage walls (aggregator always run, and gated) but not its
aggregator's output lengths. Running our engine on a stage's requests with every output length
scaled by one factor, and solving for the factor that reproduces a reported wall, turns "their stage
is slower than ours" into a measured number: how long their aggregations must be for our engine to
take as long. When no factor reaches the wall (every output already at the context limit and still
faster), length cannot be the explanation and the engine's own speed must differ.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from mosaic.core.errors import ConfigError
from mosaic.workload.types import Outcome, Request

OK, UNREACHABLE_HIGH, UNREACHABLE_LOW = "ok", "slower_than_any_length", "faster_than_any_length"


@dataclass(frozen=True)
class Inversion:
    target_s: float
    status: str                # OK, or which bound the target lies beyond
    factor: float              # the solution, or the bound reached
    wall_s: float              # the stage wall at `factor`


def scale_outcomes(requests: Sequence[Request], outcomes: Mapping[str, Outcome], factor: float,
                   max_model_len: int) -> dict[str, Outcome]:
    """Every request's output length times `factor`, at least 1 token and never past the context
    window (what vLLM would cut it at)."""
    if factor <= 0:
        raise ConfigError(f"length factor must be > 0 (got {factor})")
    out = {}
    for r in requests:
        o = outcomes[r.id]
        room = max(1, max_model_len - r.prompt_tokens)
        out[r.id] = Outcome(max(1, min(room, round(o.output_tokens * factor))), o.answer)
    return out


def invert_wall(wall: Callable[[float], float], target_s: float, lo: float = 1 / 64, hi: float = 64.0,
                rel_tol: float = 1e-3) -> Inversion:
    """The length factor f in [lo, hi] with wall(f) = target_s, by bisection on log f.

    wall must not decrease with f (longer outputs never finish sooner); the simulated wall is a
    step function of whole tokens, so the answer is the smallest f whose wall reaches the target,
    to within rel_tol of f."""
    if not target_s > 0:
        raise ConfigError(f"target wall must be > 0 s (got {target_s})")
    if not 0 < lo < hi:
        raise ConfigError(f"need 0 < lo < hi (got lo={lo}, hi={hi})")
    w_lo, w_hi = wall(lo), wall(hi)
    if w_lo >= target_s:
        return Inversion(target_s, UNREACHABLE_LOW, lo, w_lo)
    if w_hi < target_s:
        return Inversion(target_s, UNREACHABLE_HIGH, hi, w_hi)
    a, b = math.log(lo), math.log(hi)
    w_b = w_hi
    while b - a > math.log1p(rel_tol):
        mid = 0.5 * (a + b)
        w = wall(math.exp(mid))
        if w >= target_s:
            b, w_b = mid, w
        else:
            a = mid
    return Inversion(target_s, OK, math.exp(b), w_b)
