"""Which runtime and SLO settings a run was given and never reads."""
from __future__ import annotations

from mosaic.config.defaults import changed
from mosaic.config.schema import MosaicConfig, SloConfig


def not_applied(c: MosaicConfig) -> list[str]:
    """runtime.order and runtime.add_replicas steer the offline pull only; runtime.replan (and its
    ratio) online runs only, whatever the runtime; slo is read by online runs only."""
    given = [k for k in changed("runtime", c.runtime) if k != "runtime.name"]
    if c.arrivals.online():
        out = [k for k in given if k not in ("runtime.replan", "runtime.replan_ratio")]
        out += ["runtime.replan_ratio"] if not c.runtime.replan and "runtime.replan_ratio" in given else []
    else:
        out = [k for k in given if c.runtime.name != "pull" or k in ("runtime.replan", "runtime.replan_ratio")]
    if not c.arrivals.online():
        default = SloConfig()
        out += [f"slo.{k}" for k in ("latency_s", "multiple") if getattr(c.slo, k) != getattr(default, k)]
    return out
