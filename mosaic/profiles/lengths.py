"""Output-length distributions of a model: lognormal mixtures with a cap, mean and quantiles."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
from scipy import optimize, special

from mosaic.core.errors import ConfigError


def _norm_cdf(x: float) -> float:
    return 0.5 * special.erfc(-x / math.sqrt(2.0))


@dataclass(frozen=True)
class LengthComponent:
    weight: float
    median: float
    sigma: float


@dataclass(frozen=True)
class LengthDistribution:
    """Mixture of lognormals over output tokens, truncated at `cap` (a point mass there).

    Truncation models generations that hit max_tokens, which reasoning models do often.
    """

    components: tuple[LengthComponent, ...]
    cap: int

    def mean(self) -> float:
        total = 0.0
        log_cap = math.log(self.cap)
        for c in self.components:
            mu, s = math.log(c.median), c.sigma
            below = math.exp(mu + s * s / 2) * _norm_cdf((log_cap - mu - s * s) / s)
            above = self.cap * (1.0 - _norm_cdf((log_cap - mu) / s))
            total += c.weight * (below + above)
        return total

    def second_moment(self) -> float:
        """E[min(X, cap)^2], numerically on the same grid ppf uses."""
        u = (np.arange(20000) + 0.5) / 20000
        return float(np.mean(self.ppf(u).astype(float) ** 2))

    def cdf(self, x: float) -> float:
        if x >= self.cap:
            return 1.0
        if x <= 0:
            return 0.0
        return sum(c.weight * _norm_cdf((math.log(x) - math.log(c.median)) / c.sigma)
                   for c in self.components)

    def quantile(self, p: float) -> float:
        if p >= self.cdf(self.cap * (1 - 1e-12)):
            return float(self.cap)
        return float(optimize.brentq(lambda x: self.cdf(x) - p, 1e-9, self.cap))

    @cached_property
    def _ppf_table(self) -> tuple[np.ndarray, np.ndarray]:
        # The CDF on a log-spaced grid, built once per distribution: the session curves call ppf
        # some 15,000 times per plan, and rebuilding it each time was a quarter of planning.
        grid = np.geomspace(0.5, self.cap, 4096)
        cdf = sum(c.weight * special.ndtr((np.log(grid) - math.log(c.median)) / c.sigma)
                  for c in self.components)
        return np.maximum.accumulate(cdf), np.log(grid)

    def ppf(self, u: np.ndarray) -> np.ndarray:
        """Vectorised inverse CDF in whole tokens (interpolated on a log-spaced grid)."""
        cdf, log_grid = self._ppf_table
        tokens = np.exp(np.interp(u, cdf, log_grid, left=np.log(0.5), right=np.log(self.cap)))
        return np.clip(np.rint(tokens), 1, self.cap).astype(np.int64)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return self.ppf(rng.random(n))

    def scaled(self, factor: float) -> "LengthDistribution":
        return replace(self, components=tuple(replace(c, median=c.median * factor)
                                              for c in self.components))

    def calibrated_to_mean(self, target: float) -> "LengthDistribution":
        """Scale every median by one factor so the truncated mean equals `target`."""
        if not 1.0 <= target < self.cap:
            raise ConfigError(f"output mean_tokens={target} must lie in [1, cap={self.cap})")
        factor = optimize.brentq(lambda f: self.scaled(f).mean() - target, 1e-6, 1e6, xtol=1e-10)
        return self.scaled(factor)
