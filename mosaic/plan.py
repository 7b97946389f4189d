"""Plan: per worker, an ordered list of sessions (load one model, run a list of its requests)."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

from mosaic import serde
from mosaic.errors import ConfigError


@dataclass(frozen=True)
class Session:
    model: str
    request_ids: tuple[str, ...]


@dataclass(frozen=True)
class WorkerPlan:
    worker: int
    sessions: tuple[Session, ...]
    predicted_s: float = 0.0


@dataclass(frozen=True)
class SolverInfo:
    status: str
    solve_s: float
    objective: float | None
    bound: float | None
    gap: float | None


@dataclass(frozen=True)
class Plan:
    stage: str
    policy: str
    workers: tuple[WorkerPlan, ...]
    solver: SolverInfo | None = None
    params: dict[str, float] = field(default_factory=dict)

    @property
    def predicted_makespan_s(self) -> float:
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
    model fits on, and no worker loads more than K distinct models. Returns the plan unchanged."""
    model_of = {r.id: r.model for r in requests}
    seen: Counter[str] = Counter()
    for wp in plan.workers:
        for s in wp.sessions:
            if wp.worker not in fits.get(s.model, set()):
                raise PlanError(f"plan '{plan.policy}': model {s.model} placed on worker {wp.worker}, "
                                "where it does not fit in memory")
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
    dup = [r for r, c in seen.items() if c > 1]
    if dup:
        raise PlanError(f"plan '{plan.policy}': {len(dup)} requests scheduled twice, e.g. {dup[0]}")
    missing = [r for r in model_of if r not in seen]
    if missing:
        raise PlanError(f"plan '{plan.policy}': {len(missing)} requests not scheduled, e.g. {missing[0]}")
    return plan
