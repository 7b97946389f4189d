"""Build a Workload from its config section; workload kinds are registered by name."""
from __future__ import annotations

from typing import Any, Callable

from mosaic.errors import ConfigError
from mosaic.profiles import ProfileSet
from mosaic.workload.synthetic import SyntheticSpec, generate
from mosaic.workload.types import Workload

Builder = Callable[[dict[str, Any], ProfileSet, int], Workload]
_KINDS: dict[str, Builder] = {}


def register_kind(kind: str) -> Callable[[Builder], Builder]:
    def deco(fn: Builder) -> Builder:
        _KINDS[kind] = fn
        return fn
    return deco


@register_kind("synthetic")
def _synthetic(cfg: dict[str, Any], profiles: ProfileSet, seed: int) -> Workload:
    fields = SyntheticSpec.__dataclass_fields__
    return generate(SyntheticSpec(**{k: v for k, v in cfg.items() if k in fields}), profiles, seed)


def build_workload(cfg: dict[str, Any], profiles: ProfileSet, seed: int) -> Workload:
    kind = cfg.get("kind", "synthetic")
    if kind not in _KINDS:
        raise ConfigError(f"workload.kind: unknown kind '{kind}'; choose one of {sorted(_KINDS)}")
    return _KINDS[kind](cfg, profiles, seed)
