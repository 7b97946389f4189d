"""What a scheduler sees of a stage: per model, its request ids and *predicted* costs.

Built by mosaic.costs.predict from profiles; actual output lengths are never in here.
"""
from __future__ import annotations

from dataclasses import dataclass

from mosaic.costs.session_curve import SessionCurve


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


@dataclass(frozen=True)
class StageProblem:
    stage: str
    models: tuple[ModelDemand, ...]        # canonical model order
    n_workers: int
    fits: dict[str, frozenset[int]]        # model -> workers whose memory holds it

    def demand(self, model: str) -> ModelDemand:
        return next(d for d in self.models if d.model == model)

    @property
    def total_work_s(self) -> float:
        return sum(d.load_s + d.session_s for d in self.models)

    @property
    def lower_bound_s(self) -> float:
        """LP lower bound on the makespan: all predicted work (one load per model) spread evenly."""
        return self.total_work_s / self.n_workers if self.n_workers else 0.0
