"""Build a Workload from its config section through the source registry (mosaic/workload/sources)."""
from __future__ import annotations

from typing import Any

from mosaic.profiles import ProfileSet
from mosaic.workload.sources import SOURCES
from mosaic.workload.types import Workload


def build_workload(cfg: dict[str, Any], profiles: ProfileSet, seed: int) -> Workload:
    return SOURCES.get(cfg.get("kind", "synthetic"), cfg.get("plugin"))(cfg, profiles, seed)
