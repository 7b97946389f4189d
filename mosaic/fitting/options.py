"""The key=value options of the engine measurement scripts (profile_tp.py, profile_contention.py),
checked before any engine starts: each bad one is a ConfigError of one line naming the option."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, NonNegativeInt, PositiveInt, ValidationError, field_validator

from mosaic.core.errors import ConfigError
from mosaic.backends.vllm.backend import no_local_gpu, resolve_device
from mosaic.backends.vllm.models import ModelRegistry

MODELS_DIR = Path(__file__).resolve().parents[1] / "conf" / "models"


def parse_options(argv: list[str], defaults: dict[str, Any], usage: str | None = None) -> dict[str, Any]:
    """A script's key=value arguments over its defaults; ConfigError naming the first one that is
    not one of its options. -h / --help prints `usage` (the script's docstring) and the options with
    their defaults, and exits 0."""
    if any(a in ("-h", "--help") for a in argv):
        print((usage or "").strip() + "\n\nOptions (key=value) and their defaults: "
              + ", ".join(f"{k}={v}" for k, v in defaults.items()))
        raise SystemExit(0)
    cfg = dict(defaults)
    for a in argv:
        k, eq, v = a.partition("=")
        if k not in cfg or not eq:
            raise ConfigError(f"{a}: not an option of this script; give key=value with key one of {', '.join(cfg)}")
        cfg[k] = v
    return cfg


def int_option(cfg: dict[str, Any], key: str, lo: int) -> int:
    raw = cfg[key]
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise ConfigError(f"{key}={raw}: not a whole number; give one >= {lo}") from None
    if value < lo:
        raise ConfigError(f"{key}={value}: must be >= {lo}")
    return value


def bool_option(cfg: dict[str, Any], key: str) -> bool:
    raw = str(cfg[key]).strip().lower()
    if raw not in ("true", "false"):
        raise ConfigError(f"{key}={cfg[key]}: give true or false")
    return raw == "true"


def models_option(cfg: dict[str, Any]) -> ModelRegistry:
    """The model registry `models=` names (mosaic/conf/models/<name>.yaml)."""
    name = str(cfg["models"])
    known = sorted(p.stem for p in MODELS_DIR.glob("*.yaml"))
    if name not in known:
        raise ConfigError(f"models={name}: no such registry; choose from {', '.join(known)}")
    return ModelRegistry(yaml.safe_load((MODELS_DIR / f"{name}.yaml").read_text()))


def device_option(device: Any, ranks: int) -> str:
    """`device` resolved; on CPU, `ranks` workers need a core each (they would share one otherwise,
    and the measurement would say nothing about the engine)."""
    device = resolve_device(str(device))
    if no_local_gpu(device):   # vLLM would measure the CPU, labelled cuda
        raise ConfigError("device=cuda but this machine has no NVIDIA GPU (no nvidia-smi); measure with device=cpu "
                          "or auto, on the machine whose engines the profile describes")
    if device == "cpu":
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        if ranks > cores:
            raise ConfigError(f"{ranks} workers need {ranks} CPU cores, this process has {cores}; "
                              f"measure with at most {cores}")
    return device


class Grid(BaseModel):
    """The measured batches (mosaic/conf/profile.yaml `grid`, check_profile.yaml's subset)."""

    model_config = ConfigDict(extra="forbid")
    repeats: PositiveInt
    batch_sizes: list[PositiveInt] = []
    context_lengths: list[PositiveInt] = []
    outputs: list[PositiveInt] = []
    prefill: list[tuple[PositiveInt, PositiveInt]] = []
    decode: list[tuple[PositiveInt, PositiveInt, PositiveInt]] = []
    # [n, prompt_lo, prompt_hi, out_lo, out_hi]: n requests of lengths drawn uniformly from the two
    # ranges (seeded), so prefill chunks share steps with decodes as in a serving session
    mixed: list[tuple[PositiveInt, PositiveInt, PositiveInt, PositiveInt, PositiveInt]] = []
    seed: NonNegativeInt = 0   # the mixed cells' lengths

    @field_validator("mixed")
    @classmethod
    def _ranges(cls, cells):
        for n, plo, phi, olo, ohi in cells:
            if plo > phi or olo > ohi:
                raise ValueError(f"[{n}, {plo}, {phi}, {olo}, {ohi}]: each range's low end must not exceed its "
                                 "high end ([n, prompt_lo, prompt_hi, out_lo, out_hi])")
        return cells


def grid_option(grid: Any, max_model_len: int | None = None) -> dict[str, Any]:
    """`grid` validated (ConfigError: one line naming the field), as a plain dict. With the engine's
    max_model_len, every batch's prompt plus outputs must fit it (else the engine refuses it
    minutes into the measuring)."""
    try:
        g = Grid.model_validate(grid)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in ("grid", *err["loc"]))
        raise ConfigError(f"{where}: {err['msg']} (got {err.get('input')!r})") from None
    if max_model_len is not None:
        cells = ([("context_lengths", length + out) for length in g.context_lengths for out in g.outputs]
                 + [("prefill", length + 1) for _, length in g.prefill]
                 + [("decode", length + out) for _, length, out in g.decode]
                 + [("mixed", phi + ohi) for _, _, phi, _, ohi in g.mixed])
        for field, need in cells:
            if need > max_model_len:
                raise ConfigError(f"grid.{field}: a batch of {need} tokens (prompt + outputs) is more than the "
                                  f"engine's max_model_len {max_model_len} (models.engine.max_model_len); shorten it")
    return dict(grid)
