"""Schedulers registered by name. A scheduler is a pure function (StageProblem, SchedulerConfig) -> Plan.

A new policy is one file in this package that decorates its function with `@register("name")`
(found on first lookup), plus mosaic/conf/scheduler/<name>.yaml; a policy outside the package is named by
`scheduler.plugin`.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Callable

from mosaic.config.schema import SchedulerConfig
from mosaic.core.registry import Registry
from mosaic.costs.problem import StageProblem
from mosaic.plan import Plan, validate_plan
from mosaic.workload.types import Request

Scheduler = Callable[[StageProblem, SchedulerConfig], Plan]
SCHEDULERS: Registry[Scheduler] = Registry("scheduler", "scheduler.name", package="mosaic.schedulers")
available = SCHEDULERS.available

# What a problem may carry beyond the StageProblem every policy gets (mosaic/costs/predict.py
# attach_curves, attach_hints): built only for the policies that ask for it (it costs seconds).
INPUTS = ("session_curves",)


@dataclass(frozen=True)
class PolicyInfo:
    reads: frozenset[str] | None = None   # SchedulerConfig fields it uses; None: it does not say
    needs: frozenset[str] = frozenset()   # of INPUTS


_INFO: dict[Scheduler, PolicyInfo] = {}


def register(name: str, reads: tuple[str, ...] | None = None, needs: tuple[str, ...] = ()):
    """Register a policy under `name`. reads: the SchedulerConfig fields it uses beyond `name`; a
    run that sets any other field away from its default records it as not applied (summary.json
    settings_not_applied) and says so. None: the policy does not say, nothing is recorded.
    needs: the problem's optional inputs it plans on (INPUTS)."""
    unknown = sorted(set(needs) - set(INPUTS))
    if unknown:
        raise ValueError(f"scheduler '{name}': unknown input(s) {unknown}; known: {list(INPUTS)}")

    def deco(fn: Scheduler) -> Scheduler:
        _INFO[fn] = PolicyInfo(None if reads is None else frozenset(reads), frozenset(needs))
        return SCHEDULERS.register(name)(fn)
    return deco


def info(name: str, plugin: str | None = None) -> PolicyInfo:
    """What the policy registered as `name` reads and needs."""
    return _INFO.get(get_scheduler(name, plugin), PolicyInfo())


def applied(params: SchedulerConfig, plugin_fields: tuple[str, ...] = ("name", "plugin")) -> SchedulerConfig:
    """The settings as the policy acts on them: every field it does not read at its default (a
    policy that does not say what it reads gets them all as given)."""
    reads = info(params.name, params.plugin).reads
    if reads is None:
        return params
    default = SchedulerConfig(name=params.name)
    return replace(params, **{f.name: getattr(default, f.name) for f in fields(SchedulerConfig)
                              if f.name not in plugin_fields and f.name not in reads})


def not_applied(params: SchedulerConfig) -> list[str]:
    """The scheduler settings this run sets away from their defaults that its policy never reads."""
    acted = applied(params)
    return [f"scheduler.{f.name}" for f in fields(SchedulerConfig)
            if getattr(params, f.name) != getattr(acted, f.name)]


def get_scheduler(name: str, plugin: str | None = None) -> Scheduler:
    return SCHEDULERS.get(name, plugin)


def schedule(name: str, problem: StageProblem, requests: list[Request],
             params: SchedulerConfig | None = None) -> Plan:
    """Run a policy on the problem's canonical costs (StageProblem.canonical: the same plan on
    every machine) and validate its plan against the requests it had to cover."""
    params = params if params is not None else SchedulerConfig(name=name)
    plan = get_scheduler(name, params.plugin)(problem.canonical(), params)
    k = plan.params.get("K")
    return validate_plan(plan, requests, {m: set(w) for m, w in problem.fits.items()},
                         int(k) if k is not None else None)
