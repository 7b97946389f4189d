"""Plan: per worker, an ordered list of sessions (load one model, run a list of its requests)."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

from mosaic.core import serde
from mosaic.core.errors import ConfigError


@dataclass(frozen=True)
class Session:
    model: str
    request_ids: tuple[str, ...]
    # Tensor parallelism: the workers one engine spans, lead rank first. Such a session is listed,
    # identical, in each of those workers' plans (every GPU's timeline shows it); its requests count
    # once. Empty: a single-GPU session on the worker that lists it.
    workers: tuple[int, ...] = ()

    @property
    def tp_size(self) -> int:
        return max(1, len(self.workers))


@dataclass(frozen=True)
class WorkerPlan:
    worker: int
    sessions: tuple[Session, ...]
    predicted_s: float = 0.0
    # Standard deviation of the worker's time where its sessions' costs are random (session
    # curves); 0: a point prediction.
    predicted_sd_s: float = 0.0


@dataclass(frozen=True)
class SolverInfo:
    status: str                  # the solver's termination condition, as it reported it
    solve_s: float
    objective: float | None      # predicted makespan of the plan returned (whichever source)
    bound: float | None          # proven lower bound on the optimum
    gap: float | None            # (objective - bound) / objective
    source: str = "ilp"          # which plan was returned: "ilp" or "greedy" (the warm start)
    # Why the returned plan is not a verified ILP solution, or why it may not be reproducible
    # (the wall-clock guard stopped the search). None when the ILP's own solution was used.
    fallback: str | None = None
    limit: str | None = None     # what stopped the search early: "node_limit" | "time_limit"
    greedy_objective: float | None = None   # predicted makespan of the greedy warm start


@dataclass(frozen=True)
class Plan:
    stage: str
    policy: str
    workers: tuple[WorkerPlan, ...]
    solver: SolverInfo | None = None
    params: dict[str, float] = field(default_factory=dict)
    # The expected largest worker time where workers' times are random (predicted_sd_s > 0):
    # above the largest mean, since the makespan is the maximum of the draws. None: point
    # predictions, and the makespan is the largest worker's.
    expected_makespan_s: float | None = None

    @property
    def predicted_makespan_s(self) -> float:
        if self.expected_makespan_s is not None:
            return self.expected_makespan_s
        return max((w.predicted_s for w in self.workers), default=0.0)

    def to_json(self, **kw) -> str:
        return serde.to_json(self, **kw)

    @classmethod
    def from_json(cls, text: str) -> "Plan":
        return serde.from_json(cls, text)


class PlanError(ConfigError):
    """A plan breaks one of its invariants."""


def validate_plan(plan: Plan, requests: Iterable, fits: dict[str, set[int]],
                  max_models_per_worker: int | None = None) -> Plan:
    """Check every request appears exactly once, in a session of its own model, on a worker the
    model fits on, and no worker loads more than K distinct models. A tensor-parallel session must
    be listed on exactly the workers it spans, each of which must hold its share (`fits` then says
    which workers the model fits on as a TP rank), and workers sharing several TP sessions must
    list them in the same order, or they would wait on each other forever. Returns the plan."""
    model_of = {r.id: r.model for r in requests}
    seen: Counter[str] = Counter()
    listed: dict[Session, list[int]] = {}
    tp_order: dict[int, list[Session]] = {}
    for wp in plan.workers:
        for s in wp.sessions:
            ranks = s.workers or (wp.worker,)
            if len(set(ranks)) != len(ranks) or wp.worker not in ranks:
                raise PlanError(f"plan '{plan.policy}': a {s.model} session on worker {wp.worker} spans "
                                f"workers {list(ranks)}, which must be distinct and include {wp.worker}")
            for w in ranks:
                if w not in fits.get(s.model, set()):
                    raise PlanError(f"plan '{plan.policy}': model {s.model} placed on worker {w}, "
                                    "where it does not fit in memory")
            if len(ranks) > 1:
                listed.setdefault(s, []).append(wp.worker)
                tp_order.setdefault(wp.worker, []).append(s)
                if ranks[0] != wp.worker:
                    continue  # the lead rank's listing accounts for the requests
            for rid in s.request_ids:
                if rid not in model_of:
                    raise PlanError(f"plan '{plan.policy}': unknown request {rid}")
                if model_of[rid] != s.model:
                    raise PlanError(f"plan '{plan.policy}': request {rid} for {model_of[rid]} "
                                    f"is in a {s.model} session")
                seen[rid] += 1
        if max_models_per_worker is not None:
            distinct = {s.model for s in wp.sessions}
            if len(distinct) > max_models_per_worker:
                raise PlanError(f"plan '{plan.policy}': worker {wp.worker} loads {len(distinct)} "
                                f"models, more than K={max_models_per_worker}")
    for s, on in listed.items():
        if sorted(on) != sorted(s.workers):
            raise PlanError(f"plan '{plan.policy}': tensor-parallel {s.model} session spans workers "
                            f"{list(s.workers)} but is listed on workers {sorted(on)}")
    for a in tp_order:
        for b in tp_order:
            shared_a = [s for s in tp_order[a] if b in s.workers]
            shared_b = [s for s in tp_order.get(b, []) if a in s.workers]
            if a < b and shared_a != shared_b:
                raise PlanError(f"plan '{plan.policy}': workers {a} and {b} list their shared "
                                "tensor-parallel sessions in different orders")
    dup = [r for r, c in seen.items() if c > 1]
    if dup:
        raise PlanError(f"plan '{plan.policy}': {len(dup)} requests scheduled twice, e.g. {dup[0]}")
    missing = [r for r in model_of if r not in seen]
    if missing:
        raise PlanError(f"plan '{plan.policy}': {len(missing)} requests not scheduled, e.g. {missing[0]}")
    return plan
