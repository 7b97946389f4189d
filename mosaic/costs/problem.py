"""What a scheduler sees of a stage: per model, its request ids and *predicted* costs.

Built by mosaic.costs.predict from profiles; actual output lengths are never in here.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from mosaic.costs.session_curve import SessionCurve

# Scenarios of a plan's random replica times the makespan prediction averages over.
SCENARIOS = 512
# Silverman's rule-of-thumb constant for a normal kernel on standardised draws.
KERNEL_BANDWIDTH = 1.06
# Every scheduler sees its problem's seconds rounded to this many decimals (StageProblem.canonical).
CANONICAL_DECIMALS = 6


@dataclass(frozen=True)
class ModelDemand:
    model: str
    request_ids: tuple[str, ...]   # in query-stream order
    load_s: float                  # l_m
    session_s: float               # T_m: predicted wall time of one session serving all N_m requests
    first_seen: int                # position of the model's first request in the stream
    # The part of T_m every replica pays whatever its share (its longest request decoding alone):
    # 0 in the paper's proportional split, where a replica serving x requests costs l_m + tau_m x.
    fixed_s: float = 0.0
    # T_m(x) from the engine model (mosaic/costs/session_curve.py), attached for the schedulers
    # that plan on it (engine_aware); None: the proportional / affine split above.
    curve: SessionCurve | None = None
    # Predicted output tokens of each request (aligned with request_ids) from per-question signals
    # of the calibration split (its category's mean); None: no signal, requests are alike.
    length_hints: tuple[float, ...] | None = None

    @property
    def n(self) -> int:
        return len(self.request_ids)

    @property
    def per_request_s(self) -> float:  # tau_m = (T_m - fixed) / N_m; the paper's T_m / N_m
        return (self.session_s - self.fixed_s) / self.n if self.n else 0.0

    @property
    def overhead_s(self) -> float:
        """What each replica pays before its requests: the load, plus the fixed part of T_m."""
        return self.load_s + self.fixed_s

    def replica_s(self, x: int) -> float:
        """Predicted seconds of one replica serving x of the requests, its load included: the
        session curve where one is attached, else overhead + tau_m x (the proportional or affine
        split)."""
        if x <= 0:
            return 0.0
        if self.curve is not None:
            return self.load_s + self.curve(x)
        return self.overhead_s + self.per_request_s * x

    def replica_sd(self, x: int) -> float:
        """Standard deviation of that replica's time over which requests it holds (0 without a
        session curve: the proportional and affine splits are point predictions)."""
        return self.curve.sd(x) if self.curve is not None and x > 0 else 0.0

    def replica_draws(self, x: int, scenarios: int, seed: int) -> np.ndarray | None:
        """`scenarios` draws of that replica's time, load included; None: a point prediction.

        Silverman's smoothed bootstrap of the curve's standardised draws: each draw used equally
        often, in an order seeded by `seed`, plus a normal kernel of bandwidth h = 1.06 k^(-1/5)
        for k draws, shrunk by sqrt(1 + h^2) so the mean and variance stay the sample's.
        Resampling the 16-64 draws alone caps the busiest of many replicas at the largest of them:
        64 replicas almost always drew it, so the prediction's band at 32-64 workers was a few
        seconds wide (375-393 s on synth_gpqa at 64 workers, simulated 413 s)."""
        shape = self.curve.shape(x) if self.curve is not None and x > 0 else ()
        sd = self.replica_sd(x)
        if not shape or sd <= 0:
            return None
        rng = np.random.default_rng(seed)
        pick = rng.permutation(scenarios) % len(shape)
        h = KERNEL_BANDWIDTH * len(shape) ** -0.2
        # The kernel's noise centred: each replica's mean over the scenarios stays the curve's, so
        # the predicted makespan is never below the largest mean or the bound built on it.
        noise = rng.standard_normal(scenarios)
        z = (np.asarray(shape)[pick] + h * (noise - noise.mean())) / math.sqrt(1.0 + h * h)
        return self.load_s + np.maximum(0.0, self.curve(x) + sd * z)


def predict_makespan(workers: Sequence[Sequence[tuple[ModelDemand, int]]]) -> tuple[list[float], list[float], float | None]:
    """Per worker (its sessions as (model demand, requests)): its predicted mean and standard
    deviation, and the plan's predicted makespan where any replica's time is random (None: point
    predictions, the makespan is the largest mean).

    The makespan is the busiest worker's, the largest of random times, so it is predicted as the
    mean over SCENARIOS seeded scenarios, each drawing every replica's time from its curve's
    (skewed) sampled distribution, smoothed (ModelDemand.replica_draws), independently (replicas
    hold disjoint draws of requests), of the busiest worker. The largest mean would miss the
    unlucky replica that gets two long requests: 14 equal LlamaR1 replicas of 180 requests
    simulate 239-702 s around a 537 s mean."""
    means = [sum(d.replica_s(x) for d, x in sess) for sess in workers]
    sds = [math.sqrt(sum(d.replica_sd(x) ** 2 for d, x in sess)) for sess in workers]
    busiest = makespan_draws(workers)
    return means, sds, None if busiest is None else float(busiest.mean())


def makespan_draws(workers: Sequence[Sequence[tuple[ModelDemand, int]]]) -> np.ndarray | None:
    """The busiest worker's time in each of the SCENARIOS seeded scenarios predict_makespan averages
    (its predicted distribution: a quantile of these is the prediction's band); None where every
    replica's time is a point prediction."""
    if not any(d.replica_sd(x) > 0 for sess in workers for d, x in sess):
        return None
    total = np.zeros((SCENARIOS, len(workers)))
    seed = 0
    for w, sess in enumerate(workers):
        for d, x in sess:
            draws = d.replica_draws(x, SCENARIOS, seed)
            seed += 1
            total[:, w] += d.replica_s(x) if draws is None else draws
    return total.max(axis=1)


@dataclass(frozen=True)
class StageProblem:
    stage: str
    models: tuple[ModelDemand, ...]        # canonical model order
    n_workers: int
    fits: dict[str, frozenset[int]]        # model -> workers whose memory holds it

    def demand(self, model: str) -> ModelDemand:
        return next(d for d in self.models if d.model == model)

    def canonical(self) -> StageProblem:
        """This problem with every model's load, session and fixed seconds rounded to the
        microsecond. The costs' last bits can differ between machines (numpy, for one, runs float64
        exp and log through AVX-512 code only where the CPU has it), and a 1-ulp change of the ILP's
        inputs picked another plan on 8 of 12 benchmark instances of 4-16 workers: a machine chose
        among near-tied plans. Rounded, the same inputs reach the policy everywhere."""
        def r(x: float) -> float:   # inf and nan pass through round() unchanged
            return round(x, CANONICAL_DECIMALS)
        return replace(self, models=tuple(replace(d, load_s=r(d.load_s), session_s=r(d.session_s),
                                                  fixed_s=r(d.fixed_s)) for d in self.models))

    @property
    def total_work_s(self) -> float:
        return sum(d.load_s + d.session_s for d in self.models)

    @property
    def lower_bound_s(self) -> float:
        """LP lower bound on the makespan: all predicted work (one load per model) spread evenly."""
        return self.total_work_s / self.n_workers if self.n_workers else 0.0
