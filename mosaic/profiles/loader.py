"""Profile files (YAML under mosaic/profiles/data/ or any path) -> ProfileSet, with one-line errors.

The file is read strictly (mosaic/profiles/strict_yaml.py: a repeated key is an error; `1e300` is a
number) and checked against the schema (mosaic/profiles/schema.py: every field typed and ranged,
the cross-field rules) before anything is built, so every error is one ConfigError line naming the
file, the model or section, and the field, and a profile that loads holds exactly the file's values.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterable, Mapping

from mosaic.core.errors import ConfigError
from mosaic.core.paths import not_a_file

from mosaic.profiles.difficulty import parse_dataset
from mosaic.profiles.engine import EngineProfile, HostContentionProfile, TensorParallelProfile
from mosaic.profiles.kernels import kernel_costs, kernels_path, load_kernels
from mosaic.profiles.lengths import LengthComponent, LengthDistribution
from mosaic.profiles.models import COST_KEYS, ModelProfile, ProfileSet
from mosaic.profiles.schema import (ComponentSpec, EngineSpec, HostContentionSpec, LengthSpec, ModelSpec,
                                    TensorParallelSpec, message, unusable_models, validate_profiles)
from mosaic.profiles.session_cost import parse_session_fit
from mosaic.profiles.strict_yaml import load_yaml

BUNDLED_DIR = Path(__file__).parent / "data"
log = logging.getLogger(__name__)


def _length_distribution(spec: LengthSpec, shapes: Mapping[str, tuple[ComponentSpec, ...]], where: str,
                         at: tuple[str, ...]) -> LengthDistribution:
    comps = tuple(LengthComponent(float(c.weight), float(c.median), float(c.sigma)) for c in shapes[spec.shape])
    dist = LengthDistribution(comps, int(spec.cap))
    try:
        return dist.calibrated_to_mean(float(spec.mean_tokens))
    except (ValueError, RuntimeError, ArithmeticError) as e:   # the root search found no scale factor
        raise ConfigError(message(where, (*at, "mean_tokens"), f"shape '{spec.shape}' cannot be scaled to a mean of "
                                  f"{spec.mean_tokens} tokens under cap {spec.cap} ({e})")) from None


def length_distribution(output: Mapping[str, Any], shapes: Mapping[str, Any], where: str = "output") -> LengthDistribution:
    """A distribution from a profile file's raw `output` entry {shape, mean_tokens, cap} and its
    `length_shapes`, checked as the loader checks them (the real-engine profiler's use)."""
    from mosaic.profiles.schema import LengthSpec, nested, shape_spec

    try:
        spec = nested(LengthSpec, output)
        comps = {name: shape_spec(name, value) for name, value in shapes.items()}
    except ValueError as e:
        raise ConfigError(f"{where}: {e}") from None
    if spec.shape not in comps:
        raise ConfigError(f"{where}.shape: unknown shape '{spec.shape}'; length_shapes has {sorted(comps)}")
    return _length_distribution(spec, comps, where, ())


def _outputs(m: ModelSpec, shapes, where: str, name: str) -> tuple[LengthDistribution, dict[str, LengthDistribution]]:
    """(default distribution, {dataset: distribution}) of a model's `output`."""
    if isinstance(m.output, LengthSpec):
        return _length_distribution(m.output, shapes, where, ("models", name, "output")), {}
    per = {str(d): _length_distribution(spec, shapes, where, ("models", name, "output", d))
           for d, spec in m.output.items()}
    return per.pop("default"), per


def _per_degree(value: Any, degrees: Iterable[int]) -> tuple[dict[int, float], float | None]:
    """A TP block's seconds field (load_overhead_s, warmup_s): a mapping degree -> seconds, or one
    number for every degree (then also returned as the uniform value); None: no entries."""
    if value is None:
        return {}, None
    if isinstance(value, Mapping):
        return {d: float(v) for d, v in value.items()}, None
    return {d: float(value) for d in degrees}, float(value)


def _tensor_parallel(tp: TensorParallelSpec) -> TensorParallelProfile:
    """`tensor_parallel: {step_speedup: {degree: speedup}, load_overhead_s, source, attention, derive}`.
    derive: amdahl (default) derives a degree the table lacks from the measured ones; none refuses it
    (TensorParallelProfile.speedup)."""
    speedup = {degree: float(s) for degree, s in tp.step_speedup.items()}
    overhead, uniform = _per_degree(tp.load_overhead_s, speedup)
    warm, uniform_warm = _per_degree(tp.warmup_s, speedup)
    token = {degree: float(s) for degree, s in (tp.token_speedup or {}).items()}
    return TensorParallelProfile(speedup, overhead, tp.source.strip(), tp.attention, tp.derive, uniform, token,
                                 warm, uniform_warm)


def _host_contention(hc: HostContentionSpec) -> HostContentionProfile:
    def table(t):
        return {int(b): float(v) for b, v in t.items()}

    return HostContentionProfile(table(hc.step_scale), hc.source.strip(),
                                 {str(m): table(t) for m, t in (hc.models or {}).items()},
                                 table(hc.load_scale or {}),
                                 {str(m): {int(n): table(t) for n, t in by.items()} for m, by in (hc.by_batch or {}).items()},
                                 float(hc.idle_spin_s), float(hc.spin_weight))


def _engine(e: EngineSpec) -> EngineProfile:
    return EngineProfile(
        device=e.device, memory_gib=e.memory_gib, max_num_seqs=e.max_num_seqs,
        max_num_batched_tokens=e.max_num_batched_tokens, max_model_len=e.max_model_len,
        gpu_memory_utilization=e.gpu_memory_utilization, step_overhead_ms=e.step_overhead_ms,
        per_seq_overhead_ms=e.per_seq_overhead_ms,
        linear_ms_by_tokens=tuple(tuple(map(float, p)) for p in e.linear_ms_by_tokens),
        linear_reference_params_b=e.linear_reference_params_b, hbm_bandwidth_gbs=e.hbm_bandwidth_gbs,
        bandwidth_efficiency=e.bandwidth_efficiency, peak_tflops=e.peak_tflops, flops_efficiency=e.flops_efficiency,
        sources=tuple(e.sources or ()), worker_startup_s=e.worker_startup_s,
        tensor_parallel=None if e.tensor_parallel is None else _tensor_parallel(e.tensor_parallel),
        host_contention=None if e.host_contention is None else _host_contention(e.host_contention),
        scheduling=e.scheduling, block_size=e.block_size, prefix_caching=e.prefix_caching, submit_ms=e.submit_ms,
        cpu_confine=e.cpu_confine)


def _model(name: str, m: ModelSpec, shapes, where: str) -> ModelProfile:
    output, outputs = _outputs(m, shapes, where, name)
    return ModelProfile(
        name=name, kind=m.kind, hf_id=m.hf_id, params_b=m.params_b, weight_gib=m.weight_gib,
        kv_bytes_per_token=m.kv_bytes_per_token, n_layers=m.n_layers, hidden_size=m.hidden_size,
        load_time_s=m.load_time_s, output=output, sources=tuple(m.sources or ()),
        accuracy={str(d): {str(c): float(p) for c, p in cats.items()} for d, cats in m.accuracy.items()},
        cost={} if m.cost is None else {k: float(getattr(m.cost, k)) for k in COST_KEYS},
        kv_capacity=m.kv_capacity, unload_time_s=m.unload_time_s, warmup_s=m.warmup_s, outputs=outputs,
        session_fit=None if m.session_fit is None else parse_session_fit(
            m.session_fit.model_dump(exclude_unset=True), f"{where}: models.{name}.session_fit"),
        tensor_parallel=None if m.tensor_parallel is None else _tensor_parallel(m.tensor_parallel))


def _with_kernels(spec, models: dict[str, ModelProfile], where: str, profile_dir: Path | None) -> dict[str, ModelProfile]:
    """The models the file of engine.kernels times, with their KernelCosts; the others as they are."""
    if not spec.engine.kernels:
        return models
    path = kernels_path(spec.engine.kernels, profile_dir, where)
    device, entries = load_kernels(path, where)
    label = f"{where}: engine.kernels ({path.name})"
    if not set(entries) & set(models):
        raise ConfigError(f"{label}: times none of this profile's models (it has {sorted(entries)}, the profile "
                          f"{sorted(models)}); measure these or remove engine.kernels")
    out = dict(models)
    for name in set(entries) & set(models):
        m = models[name]
        if m.cost:
            raise ConfigError(f"{where}: models.{name} has a measured cost fit and kernel timings in {path.name}; "
                              "keep one (remove its cost block or its entry in the kernels file)")
        out[name] = replace(m, kernels=kernel_costs(name, entries[name], m.n_layers, m.hidden_size, device, label))
    return out


def parse_profiles(raw: Any, where: str = "profiles", profile_dir: Path | None = None) -> ProfileSet:
    """A parsed profile file (`where` names it in errors; `profile_dir`, its folder, anchors the
    relative paths it names) -> ProfileSet."""
    spec = validate_profiles(raw, where)
    models = {name: _model(name, m, spec.length_shapes, where) for name, m in spec.models.items()}
    profiles = ProfileSet(
        engine=_engine(spec.engine),
        models=_with_kernels(spec, models, where, profile_dir),
        datasets={str(d): parse_dataset(v.model_dump(exclude_unset=True), f"{where}: datasets.{d}")
                  for d, v in spec.datasets.items()},
        calibration=spec.calibration.model_dump(exclude_none=True) if spec.calibration is not None else None)
    for why in unusable_models(profiles).values():
        log.warning("%s: %s", where, why)
    return profiles


def profile_path(name_or_path: str) -> Path:
    """The file a profile setting names: an existing file as given, else a bundled profile set's
    name (a bare word such as 'moa6_a100', no folder and no suffix)."""
    if not str(name_or_path).strip():
        raise ConfigError("profiles: the setting is empty; name a bundled profile set (e.g. paper_a100) or a "
                          "profile YAML file")
    path = Path(name_or_path)
    if path.is_dir():
        raise ConfigError(f"profiles: '{name_or_path}' is a directory; name a profile YAML file in it")
    if not path.is_file() and not path.suffix and len(path.parts) == 1:
        path = BUNDLED_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        bundled = sorted(p.stem for p in BUNDLED_DIR.glob("*.yaml"))
        why = not_a_file(path)
        if why == "does not exist":
            raise ConfigError(f"profiles: no file '{name_or_path}' (bundled profile sets: {bundled})")
        raise ConfigError(f"profiles: '{name_or_path}' {why}; name a profile YAML file or a bundled profile set "
                          f"({bundled})")
    return path


def load_profiles(name_or_path: str) -> ProfileSet:
    """Load a profile set by bundled name (e.g. 'moa6_a100') or by path to a YAML file."""
    path = profile_path(name_or_path)
    where = path.name if path.parent == BUNDLED_DIR else str(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{where}: cannot read the profile file ({type(e).__name__}: {e})") from None
    return parse_profiles(load_yaml(text, where), where=where, profile_dir=path.parent)
