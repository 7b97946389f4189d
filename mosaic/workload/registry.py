"""Workload kinds registered by name: a builder (config dict, profiles, seed) -> Workload."""
from __future__ import annotations

from typing import Any, Callable

from mosaic.errors import ConfigError
from mosaic.profiles import ProfileSet
from mosaic.workload.types import Workload

Builder = Callable[[dict[str, Any], ProfileSet, int], Workload]
_KINDS: dict[str, Builder] = {}


def register_kind(kind: str) -> Callable[[Builder], Builder]:
    def deco(fn: Builder) -> Builder:
        if kind in _KINDS:
            raise ValueError(f"workload kind '{kind}' registered twice")
        _KINDS[kind] = fn
        return fn
    return deco


def get_builder(kind: str) -> Builder:
    if kind not in _KINDS:
        raise ConfigError(f"workload.kind: unknown kind '{kind}'; choose one of {sorted(_KINDS)}")
    return _KINDS[kind]
