"""Per-model profiles: memory, load time, output-length distribution and the engine cost model.

Profiles are data (YAML under mosaic/data/ or any path). Both the schedulers' cost predictor and the
simulator read the engine cost model from here, so the two can never drift apart.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from scipy import optimize, special

from mosaic.errors import ConfigError
from mosaic.session_fit import SessionFit, parse_session_fit
from mosaic.workload.difficulty import DifficultyModel, parse_dataset

GIB = 1024**3


def _norm_cdf(x: float) -> float:
    return 0.5 * special.erfc(-x / math.sqrt(2.0))


@dataclass(frozen=True)
class LengthComponent:
    weight: float
    median: float
    sigma: float


@dataclass(frozen=True)
class LengthDistribution:
    """Mixture of lognormals over output tokens, truncated at `cap` (a point mass there).

    Truncation models generations that hit max_tokens, which reasoning models do often.
    """

    components: tuple[LengthComponent, ...]
    cap: int

    def mean(self) -> float:
        total = 0.0
        log_cap = math.log(self.cap)
        for c in self.components:
            mu, s = math.log(c.median), c.sigma
            below = math.exp(mu + s * s / 2) * _norm_cdf((log_cap - mu - s * s) / s)
            above = self.cap * (1.0 - _norm_cdf((log_cap - mu) / s))
            total += c.weight * (below + above)
        return total

    def second_moment(self) -> float:
        """E[min(X, cap)^2], numerically on the same grid ppf uses."""
        u = (np.arange(20000) + 0.5) / 20000
        return float(np.mean(self.ppf(u).astype(float) ** 2))

    def cdf(self, x: float) -> float:
        if x >= self.cap:
            return 1.0
        if x <= 0:
            return 0.0
        return sum(c.weight * _norm_cdf((math.log(x) - math.log(c.median)) / c.sigma)
                   for c in self.components)

    def quantile(self, p: float) -> float:
        if p >= self.cdf(self.cap * (1 - 1e-12)):
            return float(self.cap)
        return float(optimize.brentq(lambda x: self.cdf(x) - p, 1e-9, self.cap))

    def ppf(self, u: np.ndarray) -> np.ndarray:
        """Vectorised inverse CDF in whole tokens (interpolated on a log-spaced grid)."""
        grid = np.geomspace(0.5, self.cap, 4096)
        cdf = sum(c.weight * special.ndtr((np.log(grid) - math.log(c.median)) / c.sigma)
                  for c in self.components)
        cdf = np.maximum.accumulate(cdf)
        tokens = np.exp(np.interp(u, cdf, np.log(grid), left=np.log(0.5), right=np.log(self.cap)))
        return np.clip(np.rint(tokens), 1, self.cap).astype(np.int64)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return self.ppf(rng.random(n))

    def scaled(self, factor: float) -> "LengthDistribution":
        return replace(self, components=tuple(replace(c, median=c.median * factor)
                                              for c in self.components))

    def calibrated_to_mean(self, target: float) -> "LengthDistribution":
        """Scale every median by one factor so the truncated mean equals `target`."""
        if not 1.0 <= target < self.cap:
            raise ConfigError(f"output mean_tokens={target} must lie in [1, cap={self.cap})")
        factor = optimize.brentq(lambda f: self.scaled(f).mean() - target, 1e-6, 1e6, xtol=1e-10)
        return self.scaled(factor)


@dataclass(frozen=True)
class TensorParallelProfile:
    """How one engine changes when it spans `degree` GPUs with tensor parallelism.

    step_speedup[d] = step time at TP=1 / step time at TP=d, applied to every term of the step
    (each rank holds 1/d of the weights and KV heads; all-reduces and the host-side scheduler eat
    into the ideal d). load_overhead_s: start-up a TP engine pays on top of the model's load time
    (rank processes, NCCL and all-reduce buffers); the ranks load their weight shards concurrently.
    Both are per degree (a single load_overhead_s in the YAML applies to every degree).

    attention: which terms step_speedup applies to. "step" (default): all of them, as for a
    speedup measured end to end on the same engine at the workload's own contexts. "heads": only
    the weight-bound terms (overhead, per-sequence, linear layers); the context-dependent attention
    terms (KV reads in decode, L^2 flops in prefill) scale by 1/degree, because Megatron-style TP
    (vLLM's) shards attention by KV head, so each rank reads and computes only its own heads'
    cache. Use it when step_speedup was measured at short contexts (batch-1/16 latency runs, where
    attention is a negligible share of the step) and the workload decodes long contexts.
    """

    step_speedup: dict[int, float]
    load_overhead_s: dict[int, float]
    source: str
    attention: str = "step"

    def load_overhead(self, degree: int) -> float:
        if degree == 1:
            return 0.0
        self.speedup(degree)  # the same "no entry for this degree" error
        return self.load_overhead_s[degree]

    def speedup(self, degree: int) -> float:
        if degree == 1:
            return 1.0
        if degree not in self.step_speedup:
            raise ConfigError(f"engine.tensor_parallel.step_speedup has no entry for TP degree {degree} "
                              f"(has {sorted(self.step_speedup)}): add a measured or published one, or "
                              f"use aggregation.placement=scheduled")
        return self.step_speedup[degree]


@dataclass(frozen=True)
class EngineProfile:
    """Per-iteration latency of a vLLM-style engine on one GPU, plus its scheduler limits.

    step_ms = overhead + per_seq * seqs + linear(tokens) * params/ref_params
              + kv_bytes * sum(decode context) / effective bandwidth
              + attention flops * sum(prefill length^2) / effective flops
    """

    device: str
    memory_gib: float
    max_num_seqs: int
    max_num_batched_tokens: int
    max_model_len: int
    gpu_memory_utilization: float
    step_overhead_ms: float
    per_seq_overhead_ms: float
    linear_ms_by_tokens: tuple[tuple[float, float], ...]
    linear_reference_params_b: float
    hbm_bandwidth_gbs: float
    bandwidth_efficiency: float
    peak_tflops: float
    flops_efficiency: float
    sources: tuple[str, ...] = ()
    worker_startup_s: float = 0.0   # a worker process starting its engine runtime, before any load
    tensor_parallel: TensorParallelProfile | None = None   # None: this profile cannot run TP engines

    def tp(self) -> TensorParallelProfile:
        if self.tensor_parallel is None:
            raise ConfigError(f"profiles for {self.device}: the engine section has no tensor_parallel "
                              "scaling, so a tensor-parallel session cannot be costed; add "
                              "engine.tensor_parallel {step_speedup, load_overhead_s, source} or use "
                              "aggregation.placement=scheduled")
        return self.tensor_parallel


@dataclass(frozen=True)
class ModelProfile:
    name: str
    kind: str  # "reasoning" | "instruct"
    hf_id: str
    params_b: float
    weight_gib: float
    kv_bytes_per_token: int
    n_layers: int
    hidden_size: int
    load_time_s: float
    output: LengthDistribution
    sources: tuple[str, ...] = ()
    # dataset -> category -> P(correct); "all" is the dataset-wide level (also the fallback for a
    # category the table lacks). Empty when the profile says nothing about answers.
    accuracy: dict[str, dict[str, float]] = field(default_factory=dict)
    # Measured on a real engine by experiments/profile.py; when present they replace the values
    # derived from hardware figures. cost: the fitted step model (COST_KEYS, milliseconds).
    cost: dict[str, float] = field(default_factory=dict)
    kv_capacity: int | None = None      # KV-cache tokens the engine reported
    unload_time_s: float = 0.0          # engine shutdown before the worker's next session
    # A model writes differently long answers per dataset: dataset -> lengths there. `output` is
    # the default for a dataset the profile does not list.
    outputs: dict[str, LengthDistribution] = field(default_factory=dict)
    # T_m(N, mean, max) fitted by experiments/fit_session_costs.py (mosaic.session_fit); None: the
    # cost predictor falls back to its analytic formula.
    session_fit: SessionFit | None = None

    def output_for(self, dataset: str | None) -> LengthDistribution:
        """Output lengths on `dataset` (the default distribution when it has none of its own)."""
        return self.outputs.get(dataset, self.output) if dataset else self.output


# t_step = step_ms + token_ms * tokens in step + ctx_ms * sum(decode context) + len2_ms * sum(prefill L^2)
COST_KEYS = ("step_ms", "token_ms", "ctx_ms", "len2_ms")


@dataclass(frozen=True)
class ProfileSet:
    engine: EngineProfile
    models: dict[str, ModelProfile] = field(default_factory=dict)
    # dataset -> how difficulty couples answers and lengths there, measured on traces
    # (experiments/fit_difficulty.py); a dataset without an entry gets the built-in default.
    datasets: dict[str, DifficultyModel] = field(default_factory=dict)

    def model(self, name: str) -> ModelProfile:
        try:
            return self.models[name]
        except KeyError:
            raise ConfigError(f"model '{name}' has no profile; known models: "
                              f"{', '.join(sorted(self.models))}") from None


def kv_capacity_tokens(model: ModelProfile, engine: EngineProfile, memory_gib: float, tp: int = 1) -> int:
    """KV-cache tokens left on a GPU of `memory_gib` after the weights, as vLLM sizes it (or as the
    real engine reported, when the profile was measured).

    With tp GPUs each rank keeps 1/tp of the weights and 1/tp of every token's KV (heads are split),
    so the engine holds (tp * memory * utilisation - one copy of the weights) / KV bytes per token.
    A measured single-GPU capacity C gives the same: tp * C plus the (tp - 1) weight copies freed."""
    if model.kv_capacity is not None:
        return tp * model.kv_capacity + (tp - 1) * int(model.weight_gib * GIB // model.kv_bytes_per_token)
    free = tp * memory_gib * engine.gpu_memory_utilization - model.weight_gib
    return max(0, int(free * GIB // model.kv_bytes_per_token))


def load_time_s(model: ModelProfile, engine: EngineProfile, tp: int = 1) -> float:
    """Engine start-up for a session of `model` over tp GPUs (l_m, plus the TP overhead)."""
    return model.load_time_s + (engine.tp().load_overhead(tp) if tp > 1 else 0.0)


class CostModel:
    """Step latency for one (model, engine) pair; precomputes the coefficients once. tp > 1: one
    engine over tp GPUs, faster by the engine's TP scaling (TensorParallelProfile)."""

    def __init__(self, model: ModelProfile, engine: EngineProfile, tp: int = 1):
        pts = np.array(engine.linear_ms_by_tokens, dtype=float)
        self._lin_x, self._lin_y = pts[:, 0], pts[:, 1]
        self._lin_tail_slope = (pts[-1, 1] - pts[-2, 1]) / (pts[-1, 0] - pts[-2, 0])
        self._lin_scale = model.params_b / engine.linear_reference_params_b
        self._overhead_ms = engine.step_overhead_ms
        self._per_seq_ms = engine.per_seq_overhead_ms
        bw = engine.hbm_bandwidth_gbs * 1e9 * engine.bandwidth_efficiency
        self.decode_ms_per_ctx_token = model.kv_bytes_per_token / bw * 1e3
        # Causal attention: QK^T and AV are 2*L^2*d flops each per layer, halved by the mask.
        flops = engine.peak_tflops * 1e12 * engine.flops_efficiency
        self.prefill_ms_per_len2 = 2.0 * model.n_layers * model.hidden_size / flops * 1e3
        if model.cost:  # a measured fit replaces every hardware-derived coefficient
            c = model.cost
            self._lin_x, self._lin_y = np.array([0.0, 1.0]), np.array([0.0, c["token_ms"]])
            self._lin_tail_slope, self._lin_scale = c["token_ms"], 1.0
            self._overhead_ms, self._per_seq_ms = c["step_ms"], 0.0
            self.decode_ms_per_ctx_token, self.prefill_ms_per_len2 = c["ctx_ms"], c["len2_ms"]
        if tp > 1:  # every coefficient is a share of the step, so one factor scales the step
            tpp = engine.tp()
            f = 1.0 / tpp.speedup(tp)
            self._lin_scale *= f
            self._overhead_ms *= f
            self._per_seq_ms *= f
            f_attn = 1.0 / tp if tpp.attention == "heads" else f
            self.decode_ms_per_ctx_token *= f_attn
            self.prefill_ms_per_len2 *= f_attn

    def linear_ms(self, tokens: float) -> float:
        if tokens <= self._lin_x[-1]:
            base = float(np.interp(tokens, self._lin_x, self._lin_y))
        else:
            base = self._lin_y[-1] + self._lin_tail_slope * (tokens - self._lin_x[-1])
        return base * self._lin_scale

    def decode_base_s(self, n_seqs: int) -> float:
        """Time of a decode step of n_seqs sequences, excluding the context-dependent attention."""
        return (self._overhead_ms + self._per_seq_ms * n_seqs + self.linear_ms(n_seqs)) / 1e3

    def prefill_s(self, lengths_sum: int, lengths_sq_sum: float, n_seqs: int) -> float:
        ms = (self._overhead_ms + self._per_seq_ms * n_seqs + self.linear_ms(lengths_sum)
              + self.prefill_ms_per_len2 * lengths_sq_sum)
        return ms / 1e3

    def decode_run_s(self, n_seqs: int, ctx_sum: int, steps: int) -> float:
        """Total time of `steps` consecutive decode steps; every step adds n_seqs context tokens."""
        ctx_total = steps * ctx_sum + n_seqs * steps * (steps - 1) / 2
        return steps * self.decode_base_s(n_seqs) + self.decode_ms_per_ctx_token * ctx_total / 1e3


# ---------------------------------------------------------------- loading

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
    """`tensor_parallel: {step_speedup: {degree: speedup}, load_overhead_s, source}`."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping {{step_speedup, load_overhead_s, source}}")
    unknown = sorted(set(raw) - {"step_speedup", "load_overhead_s", "source", "attention"})
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown}; expected step_speedup, load_overhead_s, source, "
                          "attention")
    attention = raw.get("attention", "step")
    if attention not in ("step", "heads"):
        raise ConfigError(f"{where}.attention: '{attention}' is not 'step' (step_speedup scales every term) or "
                          "'heads' (attention terms scale by 1/degree)")
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
    if isinstance(raw_overhead, dict):
        missing = sorted(set(speedup) - set(raw_overhead) - {1})
        if missing or set(raw_overhead) - set(speedup):
            raise ConfigError(f"{where}.load_overhead_s: give one number, or one per degree of step_speedup "
                              f"({sorted(speedup)}); got degrees {sorted(raw_overhead, key=str)}")
        overhead = {d: _number(v, f"{where}.load_overhead_s.{d}") for d, v in raw_overhead.items()}
    else:
        one = _number(raw_overhead, f"{where}.load_overhead_s")
        overhead = {d: one for d in speedup}
    for d, v in overhead.items():
        if v < 0:
            raise ConfigError(f"{where}.load_overhead_s must be >= 0 (got {v} for degree {d})")
    source = _require(raw, "source", where)
    if not isinstance(source, str) or not source.strip():
        raise ConfigError(f"{where}.source: name where the TP scaling comes from (a measurement or a publication)")
    return TensorParallelProfile(speedup, overhead, source.strip(), attention)


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
