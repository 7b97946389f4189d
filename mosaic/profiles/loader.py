"""Profile files (YAML under mosaic/profiles/data/ or any path) -> ProfileSet, with one-line errors."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mosaic.core.errors import ConfigError

from mosaic.profiles.difficulty import parse_dataset
from mosaic.profiles.engine import DERIVE_MODES, EngineProfile, TensorParallelProfile
from mosaic.profiles.lengths import LengthComponent, LengthDistribution
from mosaic.profiles.models import COST_KEYS, ModelProfile, ProfileSet
from mosaic.profiles.session_cost import parse_session_fit

_DATA = Path(__file__).parent / "data"


def _require(d: dict[str, Any], key: str, where: str) -> Any:
    if key not in d:
        raise ConfigError(f"{where}: missing field '{key}'")
    return d[key]


def _length_distribution(d: dict[str, Any], shapes: dict[str, Any], where: str) -> LengthDistribution:
    shape_name = _require(d, "shape", where)
    if shape_name not in shapes:
        raise ConfigError(f"{where}.shape: unknown shape '{shape_name}'; defined: {sorted(shapes)}")
    comps = tuple(LengthComponent(float(c["weight"]), float(c["median"]), float(c["sigma"]))
                  for c in shapes[shape_name])
    dist = LengthDistribution(comps, int(_require(d, "cap", where)))
    return dist.calibrated_to_mean(float(_require(d, "mean_tokens", where)))


def _outputs(d: Any, shapes: dict[str, Any], where: str) -> tuple[LengthDistribution, dict[str, LengthDistribution]]:
    """`output` is one distribution {shape, mean_tokens, cap}, or per dataset {default: {...},
    <dataset>: {...}}; returns (default, {dataset: distribution})."""
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected {{shape, mean_tokens, cap}} or a mapping dataset -> "
                          f"{{shape, mean_tokens, cap}} with a 'default' entry")
    if "shape" in d:
        return _length_distribution(d, shapes, where), {}
    if "default" not in d:
        raise ConfigError(f"{where}: a per-dataset output needs a 'default' entry (used for datasets "
                          f"it does not list); has {sorted(d)}")
    per = {}
    for dataset, spec in d.items():
        if not isinstance(spec, dict):
            raise ConfigError(f"{where}.{dataset}: expected {{shape, mean_tokens, cap}}")
        per[str(dataset)] = _length_distribution(spec, shapes, f"{where}.{dataset}")
    return per.pop("default"), per


def _accuracy(raw: Any, where: str) -> dict[str, dict[str, float]]:
    """`accuracy: {dataset: {category: P(correct)}}`, every value strictly inside (0, 1)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping dataset -> category -> P(correct), "
                          f"got {type(raw).__name__}")
    out: dict[str, dict[str, float]] = {}
    for dataset, cats in raw.items():
        if not isinstance(cats, dict) or not cats:
            raise ConfigError(f"{where}.{dataset}: expected a non-empty mapping category -> P(correct)")
        table = {}
        for cat, value in cats.items():
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not ok or not 0.0 < float(value) < 1.0:
                raise ConfigError(f"{where}.{dataset}.{cat}: accuracy must be a number in (0, 1) "
                                  f"(got {value!r})")
            table[str(cat)] = float(value)
        out[str(dataset)] = table
    return out


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: expected a number (got {value!r})")
    return float(value)


def _tensor_parallel(raw: Any, where: str) -> TensorParallelProfile:
    """`tensor_parallel: {step_speedup: {degree: speedup}, load_overhead_s, source, attention, derive}`.
    derive: amdahl (default) derives a degree the table lacks from the measured ones; none refuses it
    (TensorParallelProfile.speedup)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping {{step_speedup, load_overhead_s, source}}")
    unknown = sorted(set(raw) - {"step_speedup", "load_overhead_s", "source", "attention", "derive"})
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown}; expected step_speedup, load_overhead_s, source, "
                          "attention, derive")
    attention = raw.get("attention", "step")
    if attention not in ("step", "heads"):
        raise ConfigError(f"{where}.attention: '{attention}' is not 'step' (step_speedup scales every term) or "
                          "'heads' (attention terms scale by 1/degree)")
    derive = raw.get("derive", "amdahl")
    if derive not in DERIVE_MODES:
        raise ConfigError(f"{where}.derive: '{derive}' is not 'amdahl' (derive a TP degree the table lacks from "
                          "the measured ones) or 'none' (refuse it)")
    table = _require(raw, "step_speedup", where)
    if not isinstance(table, dict) or not table:
        raise ConfigError(f"{where}.step_speedup: expected a non-empty mapping TP degree -> speedup over TP=1")
    speedup: dict[int, float] = {}
    for degree, value in table.items():
        if isinstance(degree, bool) or not isinstance(degree, int) or degree < 1:
            raise ConfigError(f"{where}.step_speedup: TP degree must be an integer >= 1 (got {degree!r})")
        s = _number(value, f"{where}.step_speedup.{degree}")
        # Superlinear step speedup would mean the TP=1 step was not what the profile says.
        if not 0.0 < s <= degree or (degree == 1 and s != 1.0):
            raise ConfigError(f"{where}.step_speedup.{degree}: speedup must lie in (0, {degree}] "
                              f"(and be 1 at degree 1); got {s}")
        speedup[degree] = s
    raw_overhead = _require(raw, "load_overhead_s", where)
    uniform = None
    if isinstance(raw_overhead, dict):
        missing = sorted(set(speedup) - set(raw_overhead) - {1})
        if missing or set(raw_overhead) - set(speedup):
            raise ConfigError(f"{where}.load_overhead_s: give one number, or one per degree of step_speedup "
                              f"({sorted(speedup)}); got degrees {sorted(raw_overhead, key=str)}")
        overhead = {d: _number(v, f"{where}.load_overhead_s.{d}") for d, v in raw_overhead.items()}
    else:
        one = _number(raw_overhead, f"{where}.load_overhead_s")
        overhead = {d: one for d in speedup}
        uniform = one
    for d, v in overhead.items():
        if v < 0:
            raise ConfigError(f"{where}.load_overhead_s must be >= 0 (got {v} for degree {d})")
    source = _require(raw, "source", where)
    if not isinstance(source, str) or not source.strip():
        raise ConfigError(f"{where}.source: name where the TP scaling comes from (a measurement or a publication)")
    return TensorParallelProfile(speedup, overhead, source.strip(), attention, derive, uniform)


def parse_profiles(raw: dict[str, Any], where: str = "profiles") -> ProfileSet:
    eng = dict(_require(raw, "engine", where))
    if eng.get("tensor_parallel") is not None:
        eng["tensor_parallel"] = _tensor_parallel(eng["tensor_parallel"], f"{where}.engine.tensor_parallel")
    eng["linear_ms_by_tokens"] = tuple(tuple(map(float, p)) for p in eng["linear_ms_by_tokens"])
    eng["sources"] = tuple(eng.get("sources", ()))
    try:
        engine = EngineProfile(**eng)
    except TypeError as e:
        raise ConfigError(f"{where}.engine: {e}") from None
    shapes = raw.get("length_shapes", {})
    models = {}
    for name, m in _require(raw, "models", where).items():
        m = dict(m)
        mw = f"{where}.models.{name}"
        m["output"], m["outputs"] = _outputs(_require(m, "output", mw), shapes, f"{mw}.output")
        if m.get("session_fit") is not None:
            m["session_fit"] = parse_session_fit(m["session_fit"], f"{mw}.session_fit")
        m["sources"] = tuple(m.get("sources", ()))
        if m.get("cost"):
            missing = [k for k in COST_KEYS if k not in m["cost"]]
            if missing:
                raise ConfigError(f"{mw}.cost: missing {missing}; a measured cost model needs {list(COST_KEYS)}")
            m["cost"] = {k: float(m["cost"][k]) for k in COST_KEYS}
        m["accuracy"] = _accuracy(m.get("accuracy"), f"{mw}.accuracy")
        try:
            models[name] = ModelProfile(name=name, **m)
        except TypeError as e:
            raise ConfigError(f"{mw}: {e}") from None
    datasets = raw.get("datasets") or {}
    if not isinstance(datasets, dict):
        raise ConfigError(f"{where}.datasets must map dataset names to difficulty entries")
    return ProfileSet(engine=engine, models=models,
                      datasets={str(d): parse_dataset(v, f"{where}.datasets.{d}") for d, v in datasets.items()})


def load_profiles(name_or_path: str) -> ProfileSet:
    """Load a profile set by bundled name (e.g. 'moa6_a100') or by path to a YAML file."""
    path = Path(name_or_path)
    if not path.suffix:
        path = _DATA / f"{name_or_path}.yaml"
    if not path.exists():
        bundled = sorted(p.stem for p in _DATA.glob("*.yaml"))
        raise ConfigError(f"profiles: no file '{name_or_path}' (bundled profile sets: {bundled})")
    with open(path) as f:
        return parse_profiles(yaml.safe_load(f), where=str(path.name))
