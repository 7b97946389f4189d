"""Workload kinds registered by name: a builder (config dict, profiles, seed) -> Workload."""
from __future__ import annotations

from typing import Any, Callable

from mosaic.profiles import ProfileSet
from mosaic.core.registry import Registry
from mosaic.workload.types import Workload

Builder = Callable[[dict[str, Any], ProfileSet, int], Workload]
_KINDS: Registry[Builder] = Registry("kind", "workload.kind")
register_kind = _KINDS.register
get_builder = _KINDS.get
