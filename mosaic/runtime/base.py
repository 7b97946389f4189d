"""The runtime interface: events in from a backend, decisions out, every binding recorded."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

from mosaic.config.schema import RuntimeConfig
from mosaic.plan import Plan, Session
from mosaic.workload.types import Request


@dataclass(frozen=True)
class Replica:
    """One engine of `model`: a planned session (slot = its position in its worker's list) or one the
    runtime added (slot past the plan's). A tensor-parallel session is one replica, on its lead rank."""
    worker: int
    slot: int
    model: str


@dataclass(frozen=True)
class StageInputs:
    """What a runtime knows beyond the plan: the stage's requests and the planner's own prices."""
    requests: Mapping[str, Request]
    # Predicted output tokens per request where the workload has length signals (the calibration
    # split's category means, mosaic/run/pipeline.py length_hints); empty where it has none.
    predicted: Mapping[str, float] = field(default_factory=dict)
    fits: Mapping[str, frozenset[int]] = field(default_factory=dict)   # model -> workers it fits on
    max_models_per_worker: int | None = None                          # K; None: no limit
    load_s: Mapping[str, float] = field(default_factory=dict)         # model -> load + unload of a replica
    # model -> one replica's seconds per request at the planner's session estimate (T_m / N_m):
    # the engine model's price of the work a queue holds.
    request_s: Mapping[str, float] = field(default_factory=dict)
    # model -> n -> predicted seconds of one session over n of its requests (the planner's session
    # estimate, mosaic/costs/predict.py session_prices); a model without one: n * request_s.
    session_s: Mapping[str, Callable[[int], float]] = field(default_factory=dict)
    seed: int = 0


class Runtime:
    """Base: the static plan. Subclasses bind late (`late_binding`), taking requests as replicas ask.

    Contract with a backend: `released` before anything else for every request (a flat stage
    releases all at its start); a planned session runs only if `should_start` says so at the time
    its worker reaches it; a running late-binding replica calls `take` whenever it has a free slot,
    and ends once `take` gives nothing and its engine is empty; `finished` for every request served;
    a worker whose planned sessions are over asks `add_replica` until it answers None. Every request
    is bound exactly once (`bound`: request -> (replica, time)); `unbound()` lists any left over."""

    name = "static"
    late_binding = False

    def __init__(self, plan: Plan, inputs: StageInputs, cfg: RuntimeConfig | None = None):
        self.plan, self.inputs = plan, inputs
        self.cfg = cfg or RuntimeConfig()
        self.bound: dict[str, tuple[Replica, float]] = {}
        self.added: list[Replica] = []                 # replicas loaded beyond the plan, in order
        self.replicas: dict[str, list[Replica]] = {}   # model -> its planned replicas, plan order
        for wp in plan.workers:
            for slot, s in enumerate(wp.sessions):
                if not s.workers or s.workers[0] == wp.worker:   # a TP session once, on its lead rank
                    self.replicas.setdefault(s.model, []).append(Replica(wp.worker, slot, s.model))

    # -------- events
    def released(self, rids: Sequence[str], t: float) -> None:
        pass

    def finished(self, rid: str, t: float) -> None:
        pass

    def ended(self, replica: Replica, t: float) -> None:
        """A replica that started (should_start or add_replica said so) has ended."""

    # -------- decisions
    def planned(self, replica: Replica, session: Session, t: float) -> tuple[str, ...]:
        """Static: the requests the plan gave the session, bound at its start."""
        for rid in session.request_ids:
            self._bind(rid, replica, t)
        return session.request_ids

    def should_start(self, replica: Replica, t: float) -> bool:
        return True

    def take(self, replica: Replica, fits: Callable[[int], bool], t: float) -> str | None:
        return None

    def add_replica(self, worker: int, models: set[str], t: float) -> Replica | None:
        """A replica for `worker` to load now (its planned sessions are over; `models`: those it has
        loaded or planned), or None: the worker is done."""
        return None

    def new_replica(self, worker: int, model: str) -> Replica:
        """A replica beyond the plan's on `worker` (its slot after the plan's and earlier additions);
        recorded in `added`."""
        planned = next((len(wp.sessions) for wp in self.plan.workers if wp.worker == worker), 0)
        replica = Replica(worker, planned + sum(r.worker == worker for r in self.added), model)
        self.added.append(replica)
        return replica

    def unbound(self) -> list[str]:
        return [rid for rid in self.inputs.requests if rid not in self.bound]

    # -------- helpers
    def _bind(self, rid: str, replica: Replica, t: float) -> None:
        if rid in self.bound:
            raise RuntimeError(f"runtime '{self.name}': request {rid} bound twice")
        self.bound[rid] = (replica, t)

    def k_allows(self, models: set[str], model: str) -> bool:
        k = self.inputs.max_models_per_worker
        return k is None or model in models or len(models) + 1 <= k


def stage_inputs(problem, requests: Sequence[Request], predicted: Mapping[str, float] | None = None,
                 max_models_per_worker: int | None = None, seed: int = 0,
                 session_s: Mapping[str, Callable[[int], float]] | None = None) -> StageInputs:
    """A runtime's inputs from the stage's problem (mosaic.costs.problem.StageProblem): where models
    fit, their load prices and the planner's per-request price T_m / N_m."""
    return StageInputs(
        requests={r.id: r for r in requests},
        predicted=dict(predicted or {}),
        fits={m: frozenset(w) for m, w in problem.fits.items()},
        max_models_per_worker=max_models_per_worker,
        load_s={d.model: d.load_s for d in problem.models},
        request_s={d.model: d.session_s / max(1, len(d.request_ids)) for d in problem.models},
        session_s=dict(session_s or {}),
        seed=seed,
    )
