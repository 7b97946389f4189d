"""Measured kernel costs for a profile's models: the JSON that experiments/measure_gpu_kernels.py
writes (mosaic/fitting/gpu_kernels.py), named by a profile's `engine.kernels`.

For each model the file times, the cost model takes its three kernel terms from the measurement
instead of the datasheet-derived ones: the linear layers' time at each token count with every
layer's other kernels besides attention (norms, rotary, cache write, activation: `step_ms`; a file
without it, the GEMMs alone: `ms`), the model's own table, not the engine's scaled by parameters;
decode attention per cached token and prefill
attention per squared length (the fitted per-layer slopes times the model's layers). A model the
file does not time keeps the derived terms. The fits' intercepts are left out: on the GPU they are
torch's attention kernel at a handful of sequences, which leaves most of the GPU idle where vLLM's
split-KV decode kernel fills it (an assumption, said in the profile that uses such a file).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mosaic.core.errors import ConfigError

ARCH_CHECKED = ("n_layers", "hidden_size")   # what the profile's model block also states


@dataclass(frozen=True)
class KernelCosts:
    """One model's measured kernel terms, in the cost model's units (ms, whole model)."""

    linear_ms_by_tokens: tuple[tuple[float, float], ...]
    ctx_ms: float     # decode attention, per cached token read (all layers)
    len2_ms: float    # prefill attention, per squared prompt length (all layers)
    source: str


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _LinearPoint(_Strict):
    tokens: int = Field(ge=1)
    ms: float = Field(ge=0, allow_inf_nan=False)
    spread: float = Field(ge=0, allow_inf_nan=False)
    step_ms: float | None = Field(default=None, ge=0, allow_inf_nan=False)   # with the layers' other kernels
    step_spread: float | None = Field(default=None, ge=0, allow_inf_nan=False)


class _Fit(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)   # the raw points and derived rates ride along


class _Decode(_Fit):
    ms_per_ctx_token_layer: float = Field(gt=0, allow_inf_nan=False)


class _Prefill(_Fit):
    ms_per_len2_layer: float = Field(gt=0, allow_inf_nan=False)


class _Model(_Strict):
    arch: dict[str, int]
    linear: list[_LinearPoint] = Field(min_length=2)
    decode: _Decode
    prefill: _Prefill


class _File(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    device: str
    torch: str
    models: dict[str, _Model]


def kernels_path(value: str, profile_dir: Path | None, where: str) -> Path:
    """The file `engine.kernels` names: relative to the profile file's folder, or absolute."""
    p = Path(value)
    if not p.is_absolute():
        if profile_dir is None:
            raise ConfigError(f"{where}: engine.kernels: '{value}' is relative, but this profile was not read from a "
                              "file; give an absolute path")
        p = profile_dir / p
    return p


def load_kernels(path: Path, where: str) -> tuple[str, dict[str, dict[str, Any]]]:
    """(device, model -> raw entry) of a kernels file; one ConfigError line naming the field otherwise."""
    label = f"{where}: engine.kernels ({path.name})"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{label}: no such file; write it with experiments/measure_gpu_kernels.py profile=<this "
                          "profile>, or remove engine.kernels") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ConfigError(f"{label}: not readable JSON ({type(e).__name__}: {e})") from None
    try:
        spec = _File.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        at = ".".join(str(x) for x in err["loc"])
        raise ConfigError(f"{label}: {at}: {err['msg']}; rewrite the file with experiments/measure_gpu_kernels.py"
                          ) from None
    for name, m in spec.models.items():
        tokens = [p.tokens for p in m.linear]
        if tokens != sorted(set(tokens)):
            raise ConfigError(f"{label}: models.{name}.linear: token counts must be strictly increasing (got {tokens})")
    return spec.device, {name: m.model_dump() for name, m in spec.models.items()}


def kernel_costs(name: str, entry: dict[str, Any], n_layers: int, hidden_size: int, device: str,
                 label: str) -> KernelCosts:
    """One model's KernelCosts; refused when the file timed another shape than the profile states."""
    for key, have in zip(ARCH_CHECKED, (n_layers, hidden_size)):
        if entry["arch"].get(key) != have:
            raise ConfigError(f"{label}: models.{name}.arch.{key} is {entry['arch'].get(key)} but the profile's "
                              f"models.{name}.{key} is {have}: the kernels were timed on another shape; re-measure")
    # The profile's linear table must not fall with tokens (the last slope is extended); a timing's
    # noise at equal cost can, so each point is held at least at the one before it.
    table, floor = [], 0.0
    for p in entry["linear"]:
        floor = max(floor, p["ms"] if p.get("step_ms") is None else p["step_ms"])
        table.append((float(p["tokens"]), floor))
    return KernelCosts(tuple(table), entry["decode"]["ms_per_ctx_token_layer"] * n_layers,
                       entry["prefill"]["ms_per_len2_layer"] * n_layers, f"kernels timed on {device}")
