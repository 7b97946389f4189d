"""Which runtime and SLO settings a run was given and never reads."""
from __future__ import annotations

from mosaic.config.defaults import changed
from mosaic.config.schema import MosaicConfig, SloConfig


def not_applied(c: MosaicConfig) -> list[str]:
    """runtime.order and runtime.add_replicas steer the offline pull only (an online run keeps every
    model loaded and routes by the runtime's rule); slo is read by online runs only."""
    out = [] if c.runtime.name == "pull" and not c.arrivals.online() else \
        [k for k in changed("runtime", c.runtime) if k != "runtime.name"]
    if not c.arrivals.online():
        default = SloConfig()
        out += [f"slo.{k}" for k in ("latency_s", "multiple") if getattr(c.slo, k) != getattr(default, k)]
    return out
