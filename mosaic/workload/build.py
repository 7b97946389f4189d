"""Build a Workload from its config section. Importing this module registers every kind."""
from __future__ import annotations

from typing import Any

from mosaic.profiles import ProfileSet
from mosaic.workload.sources import questions, synthetic, recorded  # noqa: F401  (register their kinds)
from mosaic.workload.registry import get_builder
from mosaic.workload.types import Workload


def build_workload(cfg: dict[str, Any], profiles: ProfileSet, seed: int) -> Workload:
    return get_builder(cfg.get("kind", "synthetic"))(cfg, profiles, seed)
