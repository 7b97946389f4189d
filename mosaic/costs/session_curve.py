"""T_m(x): what one replica's session of x of a model's requests takes, from the engine model.

The paper splits T_m in proportion (a replica of x requests costs T_m x / N_m), which hides that
every replica's session ends with its own longest request decoding alone, and that a small shard
batches less well. A session curve instead runs the engine model (mosaic/engine/session.py, passed
in as `run_session`) on sessions of x requests built from what the scheduler may see: output lengths
from the profile's shape at the calibration split's mean (never the test outputs), prompts from
the model's own requests.

A replica's session time is a random variable (which of the model's requests land in it decides
how many long ones it decodes), and the makespan is the busiest worker's, the largest of those
draws, so the curve carries both the mean and the spread of T(x):

* shape: the engine run on the expected order statistics of x draws (quantiles i / (x + 1)) at
  every grid point, in a fixed golden-ratio interleaving, as a stream mixes short and long;
* level and spread: at a coarse geometric grid, random sessions of x requests (a fixed seed per x:
  the same problem gives the same curve), at least SAMPLES of them and more for small x; their mean
  over the shape's value and their coefficient of variation are smoothed in log x over the fine
  grid, and their standardised draws are kept (a small shard's time is right-skewed and bounded by
  the context window, which a smooth parametric fit does not reproduce). A plan's prediction
  resamples those draws with a narrow normal kernel (problem.py ModelDemand.replica_draws), so the
  busiest of many replicas is not capped at the largest draw.

Invariants: on the grid the mean T is non-decreasing and T(x) / x non-increasing (more requests
never finish sooner, a fuller batch never costs more per request); between grid points T is
linear, which keeps both. T / x non-increasing makes T subadditive: no split of a model's requests
is predicted cheaper in total than one session of all of them.

mosaic/costs/problem.py `predict_makespan` turns a plan's replicas into the expected makespan,
the mean over seeded scenarios of the busiest worker.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from mosaic.engine import RunSession
from mosaic.profiles import LengthDistribution


_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
# Random sessions per coarse grid point: at least SAMPLES, and at least SAMPLE_DRAWS requests in
# all, so a small x (whose time is one or two long requests, coefficient of variation ~1.4 at
# x = 1) gets enough draws for a mean within a few percent; capped at MAX_SAMPLES.
SAMPLES = 16
SAMPLE_DRAWS = 1024
MAX_SAMPLES = 64
# The coarse grid: 1, 2, 4, ... and n.
SAMPLE_RATIO = 2


@dataclass(frozen=True)
class SessionCurve:
    """Predicted session seconds of x requests (load excluded), x in [0, n]: the mean, and the
    standard deviation over which of the model's requests the session holds."""

    xs: tuple[int, ...]            # grid, increasing, starting at 1, ending at n
    per_request_s: tuple[float, ...]   # mean T(x) / x at the grid points, non-increasing
    spread_s: tuple[float, ...] = ()   # sd of T(x) at the grid points; () = deterministic
    # The shape of T's distribution: at each coarse grid point, its random sessions' times
    # standardised ((T - mean) / sd), sorted; () = none.
    shapes: tuple[tuple[int, tuple[float, ...]], ...] = ()

    @property
    def n(self) -> int:
        return self.xs[-1]

    def __post_init__(self):
        # T(x) memoised: a plan's local search asks for the same few x ~10^6 times. Not a field:
        # equality, hashing and asdict see the curve alone.
        object.__setattr__(self, "_memo", {})

    def __call__(self, x: float) -> float:
        hit = self._memo.get(x)
        if hit is None:
            hit = self._memo[x] = self._at(x)
        return hit

    def _at(self, x: float) -> float:
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

    def sd(self, x: float) -> float:
        """Standard deviation of T(x); beyond n it grows as sqrt(x) (a sum of more draws)."""
        if x <= 0 or not self.spread_s:
            return 0.0
        if x >= self.xs[-1]:
            return self.spread_s[-1] * math.sqrt(x / self.xs[-1])
        return float(np.interp(x, self.xs, self.spread_s))

    def shape(self, x: float) -> tuple[float, ...]:
        """Standardised draws of T(x): those of the coarse grid point nearest x in log x."""
        if x <= 0 or not self.shapes:
            return ()
        return min(self.shapes, key=lambda c: (abs(math.log(c[0] / x)), c[0]))[1]


def _monotone(xs: Sequence[int], walls: Sequence[float]) -> tuple[float, ...]:
    """Per-request costs of T made non-decreasing with T / x non-increasing (so T is subadditive)."""
    t = np.maximum.accumulate(np.asarray(walls, dtype=float))
    per_request = np.minimum.accumulate(t / np.asarray(xs, dtype=float))
    return tuple(float(c) for c in per_request)


def grid(n: int, n_workers: int, ratio: float = 1.25) -> list[int]:
    """Every even shard size a split over up to n_workers replicas can have (ceil and floor of
    n / r), the coarse sampling grid, plus a geometric grid from 1 to n."""
    pts = {1, n} | set(coarse_grid(n))
    for r in range(1, max(1, n_workers) + 1):
        pts.update((max(1, n // r), max(1, -(-n // r))))
    x = 1.0
    while x < n:
        pts.add(int(round(x)))
        x = max(x + 1, x * ratio)
    return sorted(p for p in pts if 1 <= p <= n)


def coarse_grid(n: int) -> list[int]:
    pts, x = {n}, 1
    while x < n:
        pts.add(x)
        x *= SAMPLE_RATIO
    return sorted(pts)


def representative(lengths: LengthDistribution, prompts: Sequence[int], x: int,
                   max_model_len: int) -> tuple[np.ndarray, np.ndarray]:
    """x (prompt, output) pairs at the expected order statistics, in a fixed interleaved order."""
    q = np.arange(1, x + 1) / (x + 1)
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


def draw(lengths: LengthDistribution, prompts: Sequence[int], x: int, max_model_len: int,
         rng: np.random.Generator, u: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """x (prompt, output) pairs drawn at random: outputs from the length distribution (at the
    uniforms u where given), prompts from the model's own."""
    ps = rng.choice(np.asarray(prompts, dtype=int), size=x)
    outs = np.maximum(1, np.rint(lengths.ppf(rng.random(x) if u is None else u))).astype(int)
    return ps, np.maximum(1, np.minimum(outs, max_model_len - ps))


def sample_sessions(run_session: RunSession, lengths: LengthDistribution, prompts: Sequence[int],
                    x: int, max_model_len: int) -> np.ndarray:
    """Wall seconds of random sessions of x requests (seeded by x and the model's request count,
    so the same problem draws the same sessions). Latin hypercube: each request position's
    output quantile is stratified over the sessions, so the few draws cover the tail evenly."""
    k = int(min(MAX_SAMPLES, max(SAMPLES, math.ceil(SAMPLE_DRAWS / x))))
    rng = np.random.default_rng([x, len(prompts)])
    u = (np.argsort(rng.random((k, x)), axis=0) + rng.random((k, x))) / k
    return np.array([run_session(*draw(lengths, prompts, x, max_model_len, rng, u[j])) for j in range(k)])


def build_curve(run_session: RunSession, lengths: LengthDistribution, prompts: Sequence[int],
                n_workers: int, max_model_len: int) -> SessionCurve:
    """The curve of one model with len(prompts) requests on a cluster of n_workers."""
    n = len(prompts)
    xs = grid(n, n_workers)
    shape = np.array([run_session(*representative(lengths, prompts, x, max_model_len)) for x in xs])
    coarse = coarse_grid(n)
    at = {x: i for i, x in enumerate(xs)}
    level, cv, weight, shapes = [], [], [], []
    for x in coarse:
        walls = sample_sessions(run_session, lengths, prompts, x, max_model_len)
        mean = float(walls.mean())
        sd = float(walls.std(ddof=1)) if len(walls) > 1 else 0.0
        shapes.append((x, tuple(float(v) for v in np.sort((walls - mean) / sd))) if sd > 0 else (x, ()))
        level.append(math.log(mean / shape[at[x]]) if mean > 0 and shape[at[x]] > 0 else 0.0)
        cv.append(math.log(max(1e-9, sd / mean)) if mean > 0 else math.log(1e-9))
        weight.append(math.sqrt(len(walls)))
    # Each coarse point's sample is small (its sd over sqrt(16) at large x: ~8% of the mean for a
    # reasoning model), while the level and the spread vary smoothly with log x: a weighted
    # quadratic in log x (of the log level and the log coefficient of variation) pools the points
    # instead of following each one's noise.
    logs = [math.log(x) for x in xs]
    clog = [math.log(x) for x in coarse]
    mean_t = [float(t) * math.exp(v) for t, v in zip(shape, _smooth(clog, level, weight, logs))]
    sd_t = [m * math.exp(v) for m, v in zip(mean_t, _smooth(clog, cv, weight, logs))]
    return SessionCurve(tuple(xs), _monotone(xs, mean_t), tuple(float(v) for v in sd_t), tuple(shapes))


def _smooth(x: Sequence[float], y: Sequence[float], w: Sequence[float], at: Sequence[float]) -> list[float]:
    """A weighted least-squares polynomial in x (degree 2, less with fewer points), evaluated at
    `at` clipped to the range of x. Plain floats summed in a fixed order, not LAPACK: the curve
    decides plans, which must not depend on the machine's BLAS."""
    deg = min(2, len(x) - 1)
    if deg <= 0:
        return [float(y[0])] * len(at)
    k = deg + 1
    # Normal equations, centred and scaled for conditioning, solved by Gaussian elimination.
    lo, hi = x[0], x[-1]
    mid, half = (lo + hi) / 2, max((hi - lo) / 2, 1e-12)
    u = [(xi - mid) / half for xi in x]
    a = [[0.0] * (k + 1) for _ in range(k)]
    for ui, yi, wi in zip(u, y, w):
        ww = wi * wi
        pw = [ui ** j for j in range(k)]
        for r in range(k):
            for c in range(k):
                a[r][c] += ww * pw[r] * pw[c]
            a[r][k] += ww * pw[r] * yi
    for col in range(k):
        piv = max(range(col, k), key=lambda r: (abs(a[r][col]), -r))
        a[col], a[piv] = a[piv], a[col]
        for r in range(k):
            if r != col and a[col][col] != 0:
                f = a[r][col] / a[col][col]
                a[r] = [vr - f * vc for vr, vc in zip(a[r], a[col])]
    coef = [a[j][k] / a[j][j] if a[j][j] != 0 else 0.0 for j in range(k)]
    out = []
    for t in at:
        v = (min(max(t, lo), hi) - mid) / half
        out.append(sum(c * v ** j for j, c in enumerate(coef)))
    return out
