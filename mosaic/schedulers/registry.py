"""Schedulers registered by name. A scheduler is a pure function (StageProblem, SchedulerConfig) -> Plan.

A new policy is one file in this package that decorates its function with `@register("name")`
(found on first lookup), plus conf/scheduler/<name>.yaml; a policy outside the package is named by
`scheduler.plugin`.
"""
from __future__ import annotations

from typing import Callable

from mosaic.config.schema import SchedulerConfig
from mosaic.core.registry import Registry
from mosaic.costs.problem import StageProblem
from mosaic.plan import Plan, validate_plan
from mosaic.workload.types import Request

Scheduler = Callable[[StageProblem, SchedulerConfig], Plan]
SCHEDULERS: Registry[Scheduler] = Registry("scheduler", "scheduler.name", package="mosaic.schedulers")
register = SCHEDULERS.register
available = SCHEDULERS.available


def get_scheduler(name: str, plugin: str | None = None) -> Scheduler:
    return SCHEDULERS.get(name, plugin)


def schedule(name: str, problem: StageProblem, requests: list[Request],
             params: SchedulerConfig | None = None) -> Plan:
    """Run a policy and validate its plan against the requests it had to cover."""
    params = params if params is not None else SchedulerConfig(name=name)
    plan = get_scheduler(name, params.plugin)(problem, params)
    k = plan.params.get("K")
    return validate_plan(plan, requests, {m: set(w) for m, w in problem.fits.items()},
                         int(k) if k is not None else None)
