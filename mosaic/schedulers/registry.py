"""Schedulers registered by name. A scheduler is a pure function (StageProblem, params) -> Plan."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from mosaic.core.errors import ConfigError
from mosaic.core.registry import Registry
from mosaic.plan import Plan, validate_plan
from mosaic.costs.problem import StageProblem
from mosaic.workload.types import Request


RR_ORDERS = ("first_seen", "pool")


@dataclass(frozen=True)
class SchedulerParams:
    max_models_per_worker: int | None = None   # K; None means no limit
    replication_cap: int | None = None         # R_m; None means the paper's clamp(1, T_m/l_m, N)
    # A safety net only: the node limit is what stops the ILP, so plans do not depend on load.
    time_limit_s: float = 60.0
    mip_gap: float = 1e-4
    node_limit: int = 1000                     # HiGHS mip_max_nodes: the deterministic work limit
    solver_seed: int = 0                       # HiGHS random_seed
    rr_order: str = "first_seen"               # round robin: first_seen (the paper's) | pool

    def __post_init__(self) -> None:
        # Every entry point (Hydra app, scripts, tests) builds these, so bad values stop here.
        def bad(field: str, got: object, rule: str, fix: str) -> ConfigError:
            return ConfigError(f"scheduler.{field} must be {rule} (got {got!r}); {fix}")

        k, cap = self.max_models_per_worker, self.replication_cap
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise bad("max_models_per_worker", k, "an integer >= 1 or null",
                      "set it to K >= ceil(models / workers), or null for no limit")
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
            raise bad("replication_cap", cap, "an integer >= 1 or null",
                      "set it to the most workers one model may load on, or null for the paper's rule")
        if not _number(self.time_limit_s) or not self.time_limit_s > 0:
            raise bad("time_limit_s", self.time_limit_s, "> 0 seconds",
                      "set a generous wall-clock guard such as 60 (scheduler.node_limit bounds the work)")
        if not _number(self.mip_gap) or not 0 <= self.mip_gap <= 1:
            raise bad("mip_gap", self.mip_gap, "a relative gap in [0, 1]", "e.g. 1e-4")
        if isinstance(self.node_limit, bool) or not isinstance(self.node_limit, int) or self.node_limit < 1:
            raise bad("node_limit", self.node_limit, "an integer >= 1",
                      "e.g. 1000 (branch-and-bound nodes before the ILP returns its best plan)")
        if isinstance(self.solver_seed, bool) or not isinstance(self.solver_seed, int) \
                or not 0 <= self.solver_seed <= 2**31 - 1:
            raise bad("solver_seed", self.solver_seed, "an integer in [0, 2^31 - 1]", "e.g. 0")
        if self.rr_order not in RR_ORDERS:
            raise bad("rr_order", self.rr_order, " or ".join(RR_ORDERS),
                      "first_seen is the paper's round robin, pool the fixed model order")


def _number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


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
