"""Checks on a resolved run config that no single component owns, made before anything runs.

Hydra already rejects wrong types (`seed=abc`); what it cannot see is a value of the right type
that makes no sense (a negative seed, a negative noise scale, NaN). Each component still checks its
own section (Cluster, AggregationPolicy, the scheduler registry, the workload builders); this
module covers the fields that would otherwise pass silently or end in a NumPy traceback.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

from mosaic.run.aggregation import AggregationPolicy
from mosaic.costs.predict import COST_MODELS, SHARD_COSTS, check_choice
from mosaic.core.errors import ConfigError

# Workload fields read by the synthetic and question generators and the routers: name -> (lowest
# allowed, highest allowed, what it is). None = unbounded.
_WORKLOAD_RANGES: dict[str, tuple[float | None, float | None, str]] = {
    "skill_spread": (0.0, None, "a standard deviation of per-category skill (logit scale)"),
    "routing_noise": (0.0, None, "the scale of the router's Gumbel noise"),
    "distractor_share": (0.0, 1.0, "the share of wrong answers that fall on the main distractor"),
    "prior_strength": (0.0, None, "the router's Beta-prior weight, in calibration questions"),
    "calibration_size": (0, None, "a number of held-out calibration questions"),
    "calibration_seed": (0, None, "a NumPy seed"),
}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_range(field: str, value: Any, lo: float | None, hi: float | None, what: str) -> None:
    if value is None:
        return
    if not _number(value) or not math.isfinite(value) or (lo is not None and value < lo) \
            or (hi is not None and value > hi):
        bounds = (f"in [{lo}, {hi}]" if hi is not None else f">= {lo}") if lo is not None else f"<= {hi}"
        raise ConfigError(f"{field} must be a finite number {bounds}, {what} (got {value!r}); set {field} "
                          "to a value in that range")


def validate(c: Mapping[str, Any]) -> AggregationPolicy:
    """Reject a resolved config (OmegaConf container) that would run wrongly; returns the
    aggregation policy it describes. Raises ConfigError naming the field and the fix."""
    seed = c.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be an integer >= 0 (got {seed!r}); NumPy seeds are non-negative, "
                          "use e.g. seed=0")
    wl = c.get("workload") or {}
    for name, (lo, hi, what) in _WORKLOAD_RANGES.items():
        _check_range(f"workload.{name}", wl.get(name), lo, hi, what)
    memory = (c.get("cluster") or {}).get("memory_gib")
    if _number(memory) and not math.isfinite(memory):
        raise ConfigError(f"cluster.memory_gib must be finite (got {memory!r}); set it to the GPU memory in GiB")
    sch = c.get("scheduler") or {}
    for name, choices in (("cost_model", COST_MODELS), ("shard_cost", SHARD_COSTS)):
        if name in sch:
            check_choice(name, sch[name], choices)
    agg = c.get("aggregation") or {}
    return AggregationPolicy(agg.get("policy", "threshold"), agg.get("tau"))
