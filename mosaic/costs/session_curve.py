"""T_m(x): what one replica's session of x of a model's requests takes, from the engine model.

The paper splits T_m in proportion (a replica of x requests costs T_m x / N_m), which hides that
every replica's session ends with its own longest request decoding alone, and that a small shard
batches less well. A session curve instead runs the engine model (the same continuous-batching
engine the simulator integrates, passed in as `run_session`) on a representative session of x
requests at a grid of x, from what the scheduler may see:

* output lengths: the profile's shape at the calibration split's mean (never the test outputs),
  taken at the expected order statistics of x draws (quantiles i / (x + 1)), so the session holds
  the longest request x draws are expected to contain;
* prompts: the model's own requests' prompt lengths (visible before anything runs), at the same
  quantile positions;
* order: a fixed low-discrepancy interleaving (golden-ratio), as a stream mixes short and long;
* the tail: a replica's longest request is the longest the model's whole request set is expected
  to hold (quantile N_m / (N_m + 1)), not its own share's. One replica does get that request, and
  the makespan is the busiest worker's, so a plan is priced as if any replica may be the one: a
  model split over many small shards cannot finish before its longest request does, which is what
  makes wide replication of a heavy-tailed model look better on paper than it runs.

On the grid T is made non-decreasing and T(x) / x non-increasing (more requests never finish
sooner, and a fuller batch never costs more per request); between grid points T is interpolated
linearly, which keeps both. T / x non-increasing makes T subadditive: no split of a model's requests is
predicted cheaper in total than one session of all of them, which the scheduler's lower bound
(mosaic/costs/problem.py) relies on.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from mosaic.profiles import LengthDistribution

# (prompt tokens, output tokens) of a session's requests -> its wall seconds, load excluded.
RunSession = Callable[[np.ndarray, np.ndarray], float]

_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


@dataclass(frozen=True)
class SessionCurve:
    """Predicted session seconds of x requests (load excluded), x in [0, n]."""

    xs: tuple[int, ...]            # grid, increasing, starting at 1, ending at n
    per_request_s: tuple[float, ...]   # T(x) / x at the grid points, non-increasing

    @property
    def n(self) -> int:
        return self.xs[-1]

    def __call__(self, x: float) -> float:
        if x <= 0:
            return 0.0
        xs, cs = self.xs, self.per_request_s
        if x >= xs[-1]:
            return x * cs[-1]
        i = bisect.bisect_right(xs, x)
        if i == 0:
            return x * cs[0]
        # T itself is linear between grid points: that keeps it non-decreasing and T / x
        # non-increasing (the chord's slope is at most T / x at its left end).
        x0, x1 = xs[i - 1], xs[i]
        t0, t1 = x0 * cs[i - 1], x1 * cs[i]
        return t0 + (t1 - t0) * (x - x0) / (x1 - x0)


def grid(n: int, n_workers: int, ratio: float = 1.25) -> list[int]:
    """Every even shard size a split over up to n_workers replicas can have (ceil and floor of
    n / r), plus a geometric grid from 1 to n."""
    pts = {1, n}
    for r in range(1, max(1, n_workers) + 1):
        pts.update((max(1, n // r), max(1, -(-n // r))))
    x = 1.0
    while x < n:
        pts.add(int(round(x)))
        x = max(x + 1, x * ratio)
    return sorted(p for p in pts if 1 <= p <= n)


def representative(lengths: LengthDistribution, prompts: Sequence[int], x: int,
                   max_model_len: int, n_total: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """x (prompt, output) pairs at the expected order statistics, in a fixed interleaved order.
    n_total: the model's requests over all its replicas; the longest of the x is then the
    expected longest of all n_total (see the module docstring)."""
    q = np.arange(1, x + 1) / (x + 1)
    if n_total is not None and n_total > x:
        q[-1] = n_total / (n_total + 1)
    outs = np.maximum(1, np.rint(lengths.ppf(q))).astype(int)
    sorted_prompts = np.sort(np.asarray(prompts, dtype=int))
    idx = np.minimum(len(sorted_prompts) - 1, (q * len(sorted_prompts)).astype(int))
    ps = sorted_prompts[idx]
    # Pair each output with a prompt from an unrelated quantile (they are independent), then
    # submit in golden-ratio order: both fixed, no random draw.
    ps = ps[np.argsort((np.arange(x) * _GOLDEN * 7.0) % 1.0, kind="stable")]
    order = np.argsort((np.arange(x) * _GOLDEN) % 1.0, kind="stable")
    outs, ps = outs[order], ps[order]
    outs = np.maximum(1, np.minimum(outs, max_model_len - ps))
    return ps, outs


def build_curve(run_session: RunSession, lengths: LengthDistribution, prompts: Sequence[int],
                n_workers: int, max_model_len: int) -> SessionCurve:
    """The curve of one model with len(prompts) requests on a cluster of n_workers."""
    n = len(prompts)
    xs = grid(n, n_workers)
    walls = []
    for x in xs:
        ps, outs = representative(lengths, prompts, x, max_model_len, n)
        walls.append(run_session(ps, outs))
    # More requests never take less time, and never cost more per request (the batch is at least
    # as full): T non-decreasing and T / x non-increasing, so T is subadditive.
    t = np.maximum.accumulate(np.asarray(walls, dtype=float))
    per_request = np.minimum.accumulate(t / np.asarray(xs, dtype=float))
    return SessionCurve(tuple(xs), tuple(float(c) for c in per_request))

