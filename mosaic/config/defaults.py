"""What a setting would be had the user not set it: the packaged config's default option of a group
and an option file's values over the schema's defaults. Used to tell which settings a run was
given (and then ignores), not to build the run: Hydra composes that."""
from __future__ import annotations

from dataclasses import fields
from functools import lru_cache
from typing import Any

from omegaconf import OmegaConf

from mosaic.config import CONF_DIR


@lru_cache(maxsize=None)
def default_option(group: str) -> str | None:
    """The option mosaic/conf/config.yaml's defaults list picks for `group` (None: it picks none)."""
    for entry in OmegaConf.to_container(OmegaConf.load(CONF_DIR / "config.yaml")).get("defaults", []):
        if isinstance(entry, dict) and group in entry:
            return str(entry[group])
    return None


@lru_cache(maxsize=None)
def _packaged(group: str) -> frozenset[str]:
    return frozenset(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


@lru_cache(maxsize=None)
def _option_file(group: str, option: str) -> tuple[tuple[str, Any], ...]:
    if option not in _packaged(group):   # the user's own option (or any label): the schema's defaults stand
        return ()
    path = CONF_DIR / group / f"{option}.yaml"
    values = OmegaConf.to_container(OmegaConf.load(path), resolve=False) or {}
    return tuple(values.items()) if isinstance(values, dict) else ()


def changed(group: str, section: Any) -> list[str]:
    """The dotted settings of `section` (the group's schema object) that differ from what the
    group would hold untouched: its name when it is not the default option, and each field that
    differs from that option's file (over the schema's defaults)."""
    option = getattr(section, "name", None)
    baseline = {f.name: getattr(type(section)(), f.name) for f in fields(section)}
    baseline.update(dict(_option_file(group, option)) if option else {})
    out = [f"{group}.name"] if option is not None and option != default_option(group) else []
    for f in fields(section):
        mine, base = getattr(section, f.name), baseline.get(f.name)
        if f.name == "name" or mine == base:
            continue
        if isinstance(mine, dict) and isinstance(base, dict):   # a table of settings: the keys that differ
            out += [f"{group}.{f.name}.{k}" for k in sorted({*mine, *base}, key=str) if mine.get(k) != base.get(k)]
        else:
            out.append(f"{group}.{f.name}")
    return out


def check_label(group: str, section: Any, decisive: tuple[str, ...]) -> None:
    """A group's `name` that names a packaged option must come with that option's `decisive`
    settings: the name is how tables label the run (the paper table pairs runs by
    aggregation.name), so aggregation.name=tau067 on tau 1.0 would be read as another run."""
    from mosaic.core.errors import ConfigError

    option = getattr(section, "name", None)
    given = dict(_option_file(group, option)) if option else {}
    wrong = [k for k in decisive if k in given and getattr(section, k) != given[k]]
    if wrong:
        have = ", ".join(f"{group}.{k}={getattr(section, k)}" for k in wrong)
        want = ", ".join(f"{k} {given[k]}" for k in wrong)
        raise ConfigError(f"{group}.name={option} labels the packaged option of {want}, but this run has {have}: "
                          f"choose {group}={option} as it is, or give your setting a name of its own "
                          f"({group}.name=...)")

