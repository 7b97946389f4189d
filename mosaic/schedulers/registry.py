"""Schedulers registered by name. A scheduler is a pure function (StageProblem, params) -> Plan."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from mosaic.registry import Registry
from mosaic.plan import Plan, validate_plan
from mosaic.problem import StageProblem
from mosaic.workload.types import Request


@dataclass(frozen=True)
class SchedulerParams:
    max_models_per_worker: int | None = None   # K; None means no limit
    replication_cap: int | None = None         # R_m; None means the paper's clamp(1, T_m/l_m, N)
    time_limit_s: float = 10.0
    mip_gap: float = 1e-4


Scheduler = Callable[[StageProblem, SchedulerParams], Plan]
_REGISTRY: Registry[Scheduler] = Registry("scheduler", "scheduler.name")
register = _REGISTRY.register
available = _REGISTRY.available
get_scheduler = _REGISTRY.get


def schedule(name: str, problem: StageProblem, requests: list[Request],
             params: SchedulerParams = SchedulerParams()) -> Plan:
    """Run a policy and validate its plan against the requests it had to cover."""
    plan = get_scheduler(name)(problem, params)
    k = plan.params.get("K")
    return validate_plan(plan, requests, {m: set(w) for m, w in problem.fits.items()},
                         int(k) if k is not None else None)
