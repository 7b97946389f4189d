"""Mappings of named entries on the command line (schema.WHOLE_MAPPINGS: workload.experts,
workload.aggregator, models.models): `key={...}` gives the mapping whole, its entries then exactly
the ones given. (backend.options and models.engine are options with defaults: a dict merges.)

Hydra merges a dict override into the preset's mapping: entries left out still ran, and an entry
the preset lacks was refused (the mapping is in struct mode). Hydra has no override that replaces
a structured config's field, and an entry named with a dot (Qwen1.5-7B-Chat) cannot be addressed
to delete it. So the command line hands Hydra `++key={...}` (a merge that may add entries), and
whoever composes the config then sets the mapping to the given value (`replace_given`): the run
(mosaic/cli/job.py), the command-line checks (mosaic/cli/precheck.py), and `compose` for scripts
and tests (mosaic/run/builder.py).
"""
from __future__ import annotations

from typing import Any, Sequence

from omegaconf import DictConfig, OmegaConf, open_dict

from mosaic.config.schema import WHOLE_MAPPINGS


def _parse(override: str):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_override(override)
    except Exception:  # noqa: BLE001 - not parsable: Hydra's grammar check names it
        return None


def given_whole(overrides: Sequence[str]) -> dict[str, Any]:
    """Mapping key -> the dict given for it whole (`key={...}` or `++key={...}`), in command-line
    order (a later one wins, as in Hydra). Sweeps (`key={...},{...}`) are left to the sweep's jobs,
    each of which gets one value."""
    from hydra.core.override_parser.types import OverrideType

    out: dict[str, Any] = {}
    for a in overrides:
        key, eq, value = a.partition("=")
        key = key.removeprefix("++")
        if not eq or key not in WHOLE_MAPPINGS or not value.lstrip().startswith("{"):
            continue
        o = _parse(a)
        if o is not None and o.type in (OverrideType.CHANGE, OverrideType.FORCE_ADD) \
                and not o.is_sweep_override() and isinstance(o.value(), dict):
            out[key] = o.value()
    return out


def for_hydra(args: Sequence[str]) -> list[str]:
    """The command line with each `key={...}` on a mapping written `++key={...}`, so that Hydra
    accepts entries the preset lacks; replace_given then drops the ones it kept."""
    return [f"++{a}" if not a.startswith("+") and given_whole([a]) else a for a in args]


def replace_given(cfg: DictConfig, overrides: Sequence[str]) -> DictConfig:
    """`cfg` (composed from `overrides`) with each mapping given whole set to exactly that value."""
    for key, value in given_whole(overrides).items():
        if OmegaConf.select(cfg, key, default=None) is None and key.split(".")[0] not in cfg:
            continue
        with open_dict(cfg):
            OmegaConf.update(cfg, key, value, merge=False)
    return cfg
