"""The profile-file schema: every field of a profile set (mosaic/profiles/data/*.yaml or any path),
typed and ranged, in one place. loader.py validates a file against it before anything is built, so a
bad value stops the load with one line naming the file, the model (or section) and the field, and a
value that loads is exactly the value the file holds (nothing is clipped, rounded or defaulted over).

Types. A number is a YAML int or float, never a string, boolean or null, and finite (no .nan/.inf).
An integer field takes an int, or a float with no fractional part (`3.2e4`). Exponent forms such as
`1e300` are numbers (mosaic/profiles/strict_yaml.py reads them as YAML 1.2 does); quoted, they are
strings and refused. Names (models, shapes, datasets, categories) are strings. A section lists only
its known fields: a misspelt one is an error, not ignored.

Ranges: positive where the quantity is physical (memory, bandwidth, sizes, rates), non-negative for
times and fitted costs, probabilities in (0, 1) (accuracy) or (0, 1] (efficiencies, utilisation),
and a generous upper bound everywhere so that an absurd value (a load time of 1e300 s) is refused
rather than simulated. The bounds are the constants below.

Rules that involve several fields:
* engine.max_num_batched_tokens >= engine.max_num_seqs, and with engine.scheduling=v0 also >=
  engine.max_model_len. vLLM's SchedulerConfig._verify_args refuses both (vllm/config.py, V0):
  without chunked prefill a prompt is prefilled in one step, so a token budget below the context
  window "limits the maximum sequence length ... and makes vLLM reject longer sequences", and every
  running sequence needs at least one token of the budget per step. V1 (mosaic/engine/v1.py) chunks
  prefills, so only the second rule applies to it.
* engine.scheduling is v0 or v1; engine.block_size (V1's KV block, tokens) in [1, 4096].
* engine.gpu_memory_utilization in (0, 1]: vLLM's CacheConfig refuses a value above 1.
* engine.max_num_seqs >= 1 (vLLM schedules nothing otherwise).
* engine.linear_ms_by_tokens: at least two [tokens, ms] points, token counts strictly increasing
  and times not decreasing (the cost model interpolates between them and extends the last slope:
  a falling one would price a large batch below zero).
* engine.kernels (optional): a JSON file of measured kernel timings (experiments/measure_gpu_kernels.py),
  relative to the profile file's folder; read and checked by mosaic/profiles/kernels.py (the models it
  times must have the profile's n_layers and hidden_size, and no cost fit of their own).
* a model's arch (optional): intermediate_size, n_heads, n_kv_heads (dividing n_heads), head_dim,
  vocab_size, from its config.json: the shapes the kernel timer builds.
* engine.hbm_bandwidth_gbs >= 0.1 GB/s and engine.peak_tflops >= 0.001 (a device slower than that
  would put a step beyond any finite run; 1e-300 overflowed to infinite times).
* length_shapes: each a non-empty list of lognormal components with weight > 0, median > 0,
  sigma > 0, and the weights summing to 1 within 1e-6 (a mixture).
* an output distribution {shape, mean_tokens, cap}: shape defined in length_shapes; 2 <= cap <=
  engine.max_model_len (no answer is longer than the context window); 1 <= mean_tokens < cap.
* tensor_parallel.step_speedup: degree -> speedup in (0, degree], 1 at degree 1 (a superlinear
  speedup would mean the TP=1 step is not what the profile says); load_overhead_s (and warmup_s,
  optional) one number or one per degree of step_speedup; tensor_parallel.token_speedup (optional)
  the same range, for degrees step_speedup has.
* host_contention.step_scale (and host_contention.load_scale, and each table of
  host_contention.models, per model, all ending at the same count): busy workers on a host -> step time relative to the profiled condition, in (0, 100],
  exactly 1 at the largest count (the profile's steps were measured then); models named there are
  models of the file. host_contention.by_batch (optional): model -> running sequences (an integer
  >= 1) -> such a table, for a model also in host_contention.models. host_contention.idle_spin_s:
  seconds >= 0 that an engine left without requests still counts as busy, as host_contention.spin_weight
  (in [0, 1]) of a serving one.
* session_fit.coef: as many non-negative coefficients as its form takes.
* datasets: difficulty_length^2 + length_shared^2 < 1 (the Gaussian copula's loadings).
* memory (vLLM's start-up check: the model's weights plus the KV of one max_model_len sequence at
  gpu_memory_utilization must fit, else "The model's max seq len is larger than the maximum number
  of tokens that can be stored in KV cache"): checked against engine.memory_gib (or the measured
  kv_capacity) by unusable_models(); a model that fails it still loads, flagged with a warning,
  because the GPUs a run uses are the cluster's (cluster.memory_gib), and a run that schedules it
  where it cannot fit is refused then (mosaic/costs/predict.py).
"""
import math
import re
from typing import Annotated, Any, Callable, Literal, Mapping

from pydantic import BaseModel, BeforeValidator, StrictBool, ConfigDict, Field, ValidationError, field_validator, model_validator

from mosaic.core.errors import ConfigError
from mosaic.profiles.sizing import GIB, kv_capacity_tokens
from mosaic.profiles.difficulty import DifficultyModel
from mosaic.profiles.models import COST_KEYS, ProfileSet
from mosaic.profiles.session_cost import FORMS, features

# ---------------------------------------------------------------- bounds

MAX_CONTEXT_TOKENS = 2**21        # a context window or output length: 2M tokens, 64x the 32k used here
MAX_KV_TOKENS = 2**31 - 1         # KV-cache and batch token counts (a signed 32-bit count)
MAX_SEQS = 2**20                  # running sequences of one engine
MAX_BLOCK_SIZE = 4096             # a KV block, tokens (vLLM uses 16-256)
MAX_SECONDS = 86_400.0            # a start-up, load or unload time: one day
MAX_MS = 3_600_000.0              # a per-step cost in milliseconds: one hour
MAX_GIB = 2.0**20                 # memory or weights of one GPU / model: 1 PiB
MAX_PARAMS_B = 1e5                # parameters, in billions
MAX_GBS = 1e6                     # memory bandwidth, GB/s
MIN_GBS = 0.1                     # ... at least (a CPU's DRAM: tens of GB/s)
MIN_TFLOPS = 1e-3                 # peak compute at least 1 GFLOP/s
MAX_TFLOPS = 1e6
MAX_KV_BYTES = 2**30              # KV bytes per token
MAX_DEGREE = 2**16                # tensor-parallel degree
MAX_CONTENTION = 100.0            # a step-time scale for a count of busy workers on a host
MAX_SIGMA = 10.0                  # a lognormal sigma on ln tokens (fitted ones are 0.05-1.1)
WEIGHT_TOLERANCE = 1e-6           # mixture weights sum to 1 within this


# ---------------------------------------------------------------- errors

class FieldError(ValueError):
    """A rule broken `path` below the field being validated (the path is added to the error's)."""

    def __init__(self, path: tuple[Any, ...], message: str):
        super().__init__(message)
        self.path = tuple(path)


def show(value: Any) -> str:
    """A value as an error message quotes it: short, on one line, and saying what it is."""
    if value is None:
        return "null (nothing)"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, str):
        text = repr(value if len(value) <= 60 else value[:57] + "...")
        try:
            quoted_number = math.isfinite(float(value.replace("_", "")))
        except ValueError:
            quoted_number = False
        if re.fullmatch(r"[-+]?0[0-9_]+|[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?|0[xXoObB][0-9a-fA-F_]+", value.strip()):
            # unquoted in YAML too: 1.1's base-8/60/16 forms, which this reader keeps as text
            return f"the string {text} (no base-8, base-60 or hex numbers here: write it in decimal, e.g. 64 or 90)"
        return f"the string {text}" + (" (a quoted number: remove the quotes)" if quoted_number else "")
    if isinstance(value, Mapping):
        keys = ", ".join(str(k) for k in list(value)[:4]) + (", ..." if len(value) > 4 else "")
        return f"a mapping {{{keys}}}"
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value)} item{'s' if len(value) != 1 else ''}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _first_error(err: ValidationError) -> tuple[tuple[Any, ...], str, int]:
    """(location, message, how many errors in all) of a pydantic error, the first one reported."""
    errors = err.errors(include_url=False)
    e = errors[0]
    loc, kind = tuple(e["loc"]), e["type"]
    if kind == "value_error":
        exc = e["ctx"]["error"]
        msg = str(exc)
        if isinstance(exc, FieldError):
            loc += exc.path
    elif kind == "missing":
        loc, msg = loc[:-1], f"missing field '{loc[-1]}'"
    elif kind.startswith("dict"):
        msg = f"expected a mapping, got {show(e['input'])}"
    else:
        msg = f"{e['msg']} (got {show(e.get('input'))})"
    return loc, msg, len(errors)


def message(where: str, loc: tuple[Any, ...], msg: str) -> str:
    """One line: `where: path must ...` or `where: path: what is wrong`."""
    path = ".".join(str(p) for p in loc)
    text = f"{where}: " + (f"{path}{' ' if msg.startswith('must ') else ': '}" if path else "") + msg
    return re.sub(r"\s*[\r\n]+\s*", " ", text)


def nested(model: type[BaseModel], data: Any, path: tuple[Any, ...] = ()) -> Any:
    """`data` validated as `model` inside another validator: its first error, moved under `path`."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        loc, msg, _ = _first_error(e)
        raise FieldError((*path, *loc), msg) from None


# ---------------------------------------------------------------- value types

def _bounds(gt, ge, lt, le) -> str:
    def fmt(x):
        return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"
    lo = f"({fmt(gt)}" if gt is not None else f"[{fmt(ge)}" if ge is not None else None
    hi = f"{fmt(lt)})" if lt is not None else f"{fmt(le)}]" if le is not None else None
    if lo and hi:
        return f"in {lo}, {hi}"
    if lo:
        return f"{'>' if gt is not None else '>='} {lo[1:]}"
    return f"{'<' if lt is not None else '<='} {hi[:-1]}"


def number(value: Any, integer: bool = False) -> int | float:
    """A finite int or float (not a bool, string or null), unchanged; an integer field also takes
    a float without fractional part, as the int it equals."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected {'an integer' if integer else 'a number'}, got {show(value)}")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"must be a finite number (got {value})")
        if integer:
            if not value.is_integer():
                raise ValueError(f"expected an integer, got {value}")
            return int(value)
    return value


def ranged(*, gt: float | None = None, ge: float | None = None, lt: float | None = None,
           le: float | None = None, integer: bool = False, optional: bool = False,
           nan: bool = False) -> Callable[[Any], Any]:
    """The check of a number in a range (an integer with integer=True; optional: null allowed;
    nan: .nan allowed, meaning "not measured")."""
    what = _bounds(gt, ge, lt, le) + (" and an integer" if integer else "")

    def check(value: Any) -> Any:
        if value is None and optional:
            return None
        if nan and isinstance(value, float) and math.isnan(value):
            return value
        v = number(value, integer)
        if (gt is not None and not v > gt) or (ge is not None and not v >= ge) \
                or (lt is not None and not v < lt) or (le is not None and not v <= le):
            raise ValueError(f"must be {what} (got {show(v)})")
        return v
    return check


def Number(**bounds: Any) -> Any:
    """A number field: the annotation of ranged(**bounds)."""
    return Annotated[Any, BeforeValidator(ranged(**bounds))]


def _text(value: Any) -> Any:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a non-empty string (got {show(value)})")
    return value


def _string(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {show(value)}")
    return value


def _texts(value: Any) -> Any:
    """A list of strings (e.g. `sources`); null is an empty list."""
    if value is None:
        return None
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"expected a list of strings, got {show(value)}")
    for i, s in enumerate(value):
        if not isinstance(s, str):
            raise FieldError((i,), f"expected a string, got {show(s)}")
    return value


def Choice(*options: str, why: str = "") -> Any:
    def check(value: Any) -> Any:
        if not isinstance(value, str) or value not in options:
            shown = f"'{value}'" if isinstance(value, str) else show(value)
            raise ValueError(f"{shown} is not one of {', '.join(repr(o) for o in options)}{why}")
        return value
    return Annotated[Any, BeforeValidator(check)]


Text = Annotated[Any, BeforeValidator(_text)]
String = Annotated[Any, BeforeValidator(_string)]
Texts = Annotated[Any, BeforeValidator(_texts)]


def _name(key: Any, what: str) -> str:
    if not isinstance(key, str) or not key.strip():
        raise FieldError((key,), f"{what} names must be non-empty strings (got {show(key)}); quote it")
    return key


def _mapping_of(value: Any, item: Callable[[Any, Any], Any], what: str, allow_empty: bool = True) -> dict:
    """A mapping name -> item(name, value) with string names."""
    if not isinstance(value, Mapping):
        raise ValueError(f"expected a mapping of {what} names, got {show(value)}")
    if not value and not allow_empty:
        raise ValueError(f"expected at least one {what}")
    return {_name(k, what): item(k, v) for k, v in value.items()}


# ---------------------------------------------------------------- sections

class Section(BaseModel):
    """A mapping with these fields and no others."""

    model_config = ConfigDict(frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            raise ValueError(f"expected a mapping with fields {', '.join(cls.model_fields)}, got {show(data)}")
        unknown = [str(k) for k in data if k not in cls.model_fields]
        if unknown:
            raise ValueError(f"unknown field(s) {unknown}; expected only {', '.join(cls.model_fields)}")
        return data


class TensorParallelSpec(Section):
    step_speedup: Any
    load_overhead_s: Any
    source: Text
    # Optional: the speed-up of the per-token work (linear layers per batch token, attention),
    # measured on prefill-bound batches; step_speedup then scales the per-step and per-sequence
    # terms only. Absent: step_speedup scales every term.
    token_speedup: Any = None
    # Optional: a fresh TP engine's one-off start of serving beyond a TP=1 engine's (its first
    # request), one number or one per degree of step_speedup, as load_overhead_s. Absent: none.
    warmup_s: Any = None
    attention: Choice("step", "heads", why=" ('step': step_speedup scales every term; 'heads': attention "
                      "terms scale by 1/degree)") = "step"
    derive: Choice("amdahl", "none", why=" ('amdahl': derive a TP degree the table lacks from the measured "
                   "ones; 'none': refuse it)") = "amdahl"

    @field_validator("step_speedup", "token_speedup", mode="before")
    @classmethod
    def _speedups(cls, value: Any, info) -> Any:
        if value is None and info.field_name == "token_speedup":
            return value
        if not isinstance(value, Mapping) or not value:
            raise ValueError(f"expected a non-empty mapping TP degree -> speedup over TP=1, got {show(value)}")
        for degree, s in value.items():
            if isinstance(degree, bool) or not isinstance(degree, int) or not 1 <= degree <= MAX_DEGREE:
                raise ValueError(f"TP degree must be an integer >= 1 (got {show(degree)})")
            try:
                s = number(s)
            except ValueError as e:
                raise FieldError((degree,), str(e)) from None
            if not 0.0 < s <= degree or (degree == 1 and s != 1.0):
                raise FieldError((degree,), f"speedup must lie in (0, {degree}] (and be 1 at degree 1); got {s}")
        return value

    @field_validator("load_overhead_s", "warmup_s", mode="before")
    @classmethod
    def _overheads(cls, value: Any, info) -> Any:
        if value is None and info.field_name == "warmup_s":
            return value
        items = value.items() if isinstance(value, Mapping) else [((), value)]
        for degree, v in items:
            path = () if degree == () else (degree,)
            try:
                v = number(v)
            except ValueError as e:
                raise FieldError(path, str(e)) from None
            if not 0 <= v <= MAX_SECONDS:
                raise FieldError(path, f"must be >= 0 and at most {MAX_SECONDS:g} s (got {v})")
        return value

    @model_validator(mode="after")
    def _one_per_degree(self) -> "TensorParallelSpec":
        if self.token_speedup is not None and set(self.token_speedup) - set(self.step_speedup) - {1}:
            raise FieldError(("token_speedup",), f"give degrees that step_speedup measures ({sorted(self.step_speedup)}); "
                             f"got {sorted(self.token_speedup, key=str)}")
        for name in ("load_overhead_s", "warmup_s"):
            value = getattr(self, name)
            if isinstance(value, Mapping):
                given, measured = set(value), set(self.step_speedup)
                if (measured - given - {1}) or (given - measured):
                    raise FieldError((name,), f"give one number, or one per degree of step_speedup "
                                     f"({sorted(measured)}); got degrees {sorted(given, key=str)}")
        return self


def _scale_table(value: Any, path: tuple[Any, ...] = ()) -> Any:
    """busy workers -> step-time scale: positive, exactly 1 at the largest count."""
    if not isinstance(value, Mapping) or not value:
        raise FieldError(path, f"expected a non-empty mapping busy workers -> step time scale, got {show(value)}")
    for busy, v in value.items():
        if isinstance(busy, bool) or not isinstance(busy, int) or not 1 <= busy <= MAX_DEGREE:
            raise FieldError(path, f"a busy-worker count must be an integer >= 1 (got {show(busy)})")
        try:
            v = number(v)
        except ValueError as e:
            raise FieldError((*path, busy), str(e)) from None
        if not 0.0 < v <= MAX_CONTENTION:
            raise FieldError((*path, busy), f"must lie in (0, {MAX_CONTENTION:g}] (got {v})")
    top = max(value)
    if number(value[top]) != 1.0:
        raise FieldError((*path, top), f"must be 1: the profile's step costs were measured with the most busy workers "
                         f"listed ({top}), and the scales are relative to them (got {value[top]})")
    return value


class HostContentionSpec(Section):
    step_scale: Any
    models: Any = None       # model -> its own table (measured per model); step_scale for the others
    load_scale: Any = None   # the same for a model's load (engine start-up); none: loads do not interact
    by_batch: Any = None     # model -> running sequences -> its table at that batch (measured per batch)
    idle_spin_s: Number(ge=0, le=MAX_SECONDS) = 0.0   # an idle engine keeps its host busy this long
    spin_weight: Number(ge=0, le=1) = 1.0             # ... as this share of a serving engine
    source: Text

    @field_validator("step_scale", mode="before")
    @classmethod
    def _scales(cls, value: Any) -> Any:
        return _scale_table(value)

    @field_validator("load_scale", mode="before")
    @classmethod
    def _load_scales(cls, value: Any) -> Any:
        return value if value is None else _scale_table(value)

    @field_validator("models", mode="before")
    @classmethod
    def _per_model(cls, value: Any) -> Any:
        if value is None:
            return value
        if not isinstance(value, Mapping):
            raise ValueError(f"expected a mapping model -> {{busy workers: scale}}, got {show(value)}")
        for name, table in value.items():
            _scale_table(table, (name,))
        return value

    @field_validator("by_batch", mode="before")
    @classmethod
    def _per_batch(cls, value: Any) -> Any:
        if value is None:
            return value
        if not isinstance(value, Mapping) or not value:
            raise ValueError(f"expected a mapping model -> {{running sequences: {{busy workers: scale}}}}, "
                             f"got {show(value)}")
        for name, by_seqs in value.items():
            if not isinstance(by_seqs, Mapping) or not by_seqs:
                raise FieldError((name,), f"expected a mapping running sequences -> {{busy workers: scale}}, "
                                 f"got {show(by_seqs)}")
            for seqs, table in by_seqs.items():
                if isinstance(seqs, bool) or not isinstance(seqs, int) or seqs < 1:
                    raise FieldError((name,), f"a running-sequence count must be an integer >= 1 (got {show(seqs)})")
                _scale_table(table, (name, seqs))
        return value

    @model_validator(mode="after")
    def _same_top(self) -> "HostContentionSpec":
        top = max(self.step_scale)
        tables = [(("models", name), table) for name, table in (self.models or {}).items()]
        tables += [(("by_batch", name, seqs), table) for name, by_seqs in (self.by_batch or {}).items()
                   for seqs, table in by_seqs.items()]
        for name in self.by_batch or {}:
            if name not in (self.models or {}):
                raise FieldError(("by_batch", name), "has no table in host_contention.models (the one for steps "
                                 "of unknown batch); add it there")
        for path, table in tables + ([(("load_scale",), self.load_scale)] if self.load_scale else []):
            if max(table) != top:
                raise FieldError(path, f"must end at {top} busy workers, as step_scale does (got {max(table)})")
        return self


class EngineSpec(Section):
    device: Text
    memory_gib: Number(gt=0, le=MAX_GIB)
    max_num_seqs: Number(ge=1, le=MAX_SEQS, integer=True)
    max_num_batched_tokens: Number(ge=1, le=MAX_KV_TOKENS, integer=True)
    max_model_len: Number(ge=2, le=MAX_CONTEXT_TOKENS, integer=True)
    gpu_memory_utilization: Number(gt=0, le=1)
    step_overhead_ms: Number(ge=0, le=MAX_MS)
    per_seq_overhead_ms: Number(ge=0, le=MAX_MS)
    linear_ms_by_tokens: Any
    linear_reference_params_b: Number(gt=0, le=MAX_PARAMS_B)
    hbm_bandwidth_gbs: Number(ge=MIN_GBS, le=MAX_GBS)
    bandwidth_efficiency: Number(gt=0, le=1)
    peak_tflops: Number(ge=MIN_TFLOPS, le=MAX_TFLOPS)
    flops_efficiency: Number(gt=0, le=1)
    sources: Texts = None
    worker_startup_s: Number(ge=0, le=MAX_SECONDS) = 0.0
    tensor_parallel: TensorParallelSpec | None = None
    host_contention: HostContentionSpec | None = None
    scheduling: Literal["v0", "v1"] = "v0"
    block_size: Number(ge=1, le=MAX_BLOCK_SIZE, integer=True) = 16
    prefix_caching: StrictBool = True
    submit_ms: Number(ge=0, le=MAX_MS) = 0.0
    cpu_confine: Literal["start", "always"] = "start"
    # Measured kernel costs (experiments/measure_gpu_kernels.py): a JSON file, relative to the profile
    # file's folder; its models take their linear, decode- and prefill-attention terms from it.
    kernels: String = ""

    @field_validator("linear_ms_by_tokens", mode="before")
    @classmethod
    def _linear(cls, value: Any) -> Any:
        if not isinstance(value, (list, tuple)) or len(value) < 2:
            raise ValueError(f"expected a list of at least two [tokens, ms] points, got {show(value)}")
        last, last_ms = 0, 0.0
        for i, point in enumerate(value):
            if not isinstance(point, (list, tuple)) or len(point) != 2:
                raise FieldError((i,), f"expected a [tokens, ms] pair, got {show(point)}")
            tokens, ms = point
            try:
                tokens, ms = number(tokens), number(ms)
            except ValueError as e:
                raise FieldError((i,), str(e)) from None
            if not last < tokens <= MAX_KV_TOKENS:
                raise FieldError((i, 0), f"token counts must be > 0 and strictly increasing (got {tokens} after {last})")
            if not 0 <= ms <= MAX_MS:
                raise FieldError((i, 1), f"must be a time in [0, {MAX_MS:g}] ms (got {ms})")
            if ms < last_ms:
                raise FieldError((i, 1), f"times must not decrease with tokens (got {ms} ms after {last_ms} ms): "
                                 "the last slope is extended, and a falling one prices large batches below zero")
            last, last_ms = tokens, ms
        return value

    @model_validator(mode="after")
    def _vllm_limits(self) -> "EngineSpec":
        # vLLM SchedulerConfig._verify_args (see the module docstring).
        if self.scheduling == "v0" and self.max_num_batched_tokens < self.max_model_len:
            raise FieldError(("max_num_batched_tokens",), f"must be >= max_model_len ({self.max_model_len}) "
                             f"(got {self.max_num_batched_tokens}): without chunked prefill (vLLM V0, as simulated) "
                             "a prompt is prefilled in one step, and vLLM refuses a smaller budget")
        if self.max_num_batched_tokens < self.max_num_seqs:
            raise FieldError(("max_num_batched_tokens",), f"must be >= max_num_seqs ({self.max_num_seqs}) (got "
                             f"{self.max_num_batched_tokens}): every running sequence needs a token per step")
        return self


class ComponentSpec(Section):
    weight: Number(gt=0, le=1)
    median: Number(gt=0, le=1e9)
    sigma: Number(gt=0, le=MAX_SIGMA)


def shape_spec(name: Any, value: Any) -> tuple[ComponentSpec, ...]:
    if not isinstance(value, (list, tuple)) or not value:
        raise FieldError((name,), f"expected a non-empty list of {{weight, median, sigma}}, got {show(value)}")
    comps = tuple(nested(ComponentSpec, c, (name, i)) for i, c in enumerate(value))
    total = math.fsum(float(c.weight) for c in comps)
    if abs(total - 1.0) > WEIGHT_TOLERANCE:
        raise FieldError((name,), f"mixture weights must sum to 1 (within {WEIGHT_TOLERANCE:g}); they sum to "
                         f"{total:.9g}")
    return comps


class LengthSpec(Section):
    """One output-length distribution: the shape's medians are scaled so the mean is mean_tokens."""

    shape: Text
    mean_tokens: Number(ge=1, le=MAX_CONTEXT_TOKENS)
    cap: Number(ge=2, le=MAX_CONTEXT_TOKENS, integer=True)

    @model_validator(mode="after")
    def _mean_below_cap(self) -> "LengthSpec":
        if not self.mean_tokens < self.cap:
            raise FieldError(("mean_tokens",), f"must lie in [1, cap={self.cap}) (got {self.mean_tokens})")
        return self


class SessionFitSpec(Section):
    form: Choice(*FORMS)
    coef: Any
    kv_tokens: Number(ge=1, le=MAX_KV_TOKENS, integer=True)
    max_num_seqs: Number(ge=1, le=MAX_SEQS, integer=True)
    error_median: Number(ge=0, le=1e6, nan=True) = None     # held-out error; .nan: not measured
    error_max: Number(ge=0, le=1e6, nan=True) = None
    n_points: Number(ge=0, le=1e9, integer=True) = 0
    source: String = ""

    @field_validator("coef", mode="before")
    @classmethod
    def _coefficients(cls, value: Any) -> Any:
        if not isinstance(value, (list, tuple)) or not value:
            raise ValueError(f"expected a list of coefficients, got {show(value)}")
        for i, c in enumerate(value):
            try:
                c = number(c)
            except ValueError as e:
                raise FieldError((i,), str(e)) from None
            if not 0 <= c <= 1e6:
                raise FieldError((i,), f"must be in [0, 1e6] (fitted non-negative; got {c})")
        return value

    @model_validator(mode="after")
    def _coefficient_count(self) -> "SessionFitSpec":
        expected = len(features(self.form, 1, 1, 1, 1, 1, 1, 1))
        if len(self.coef) != expected:
            raise FieldError(("coef",), f"form '{self.form}' takes {expected} coefficients, got {len(self.coef)}")
        return self


def _probability_table(value: Any) -> dict:
    """`accuracy: {dataset: {category: P(correct)}}`, every value strictly inside (0, 1)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"expected a mapping dataset -> category -> P(correct), got {show(value)}")
    for dataset, cats in value.items():
        _name(dataset, "dataset")
        if not isinstance(cats, Mapping) or not cats:
            raise FieldError((dataset,), f"expected a non-empty mapping category -> P(correct), got {show(cats)}")
        for cat, p in cats.items():
            _name(cat, "category")
            ok = isinstance(p, (int, float)) and not isinstance(p, bool)
            if not ok or not 0.0 < float(p) < 1.0:
                raise FieldError((dataset, cat), f"accuracy must be a number in (0, 1) (got {show(p)})")
    return value


class CostSpec(Section):
    """A measured step-cost fit (milliseconds): t = step_ms + seq_ms * sequences + token_ms * tokens
    + ctx_ms * decode context + len2_ms * prefill attention (length^2 for a whole prompt)."""

    step_ms: Number(ge=0, le=MAX_MS)
    token_ms: Number(ge=0, le=MAX_MS)
    ctx_ms: Number(ge=0, le=MAX_MS)
    len2_ms: Number(ge=0, le=MAX_MS)
    seq_ms: Number(ge=0, le=MAX_MS) = 0.0


assert tuple(CostSpec.model_fields) == COST_KEYS


class ArchSpec(Section):
    """A model's layer shapes beyond n_layers and hidden_size (its config.json), for timing its kernels."""

    intermediate_size: Number(ge=1, le=10_000_000, integer=True)
    n_heads: Number(ge=1, le=100_000, integer=True)
    n_kv_heads: Number(ge=1, le=100_000, integer=True)
    head_dim: Number(ge=1, le=100_000, integer=True)
    vocab_size: Number(ge=1, le=100_000_000, integer=True)

    @model_validator(mode="after")
    def _groups(self) -> "ArchSpec":
        if self.n_heads % self.n_kv_heads:
            raise FieldError(("n_kv_heads",), f"must divide n_heads ({self.n_heads}) (got {self.n_kv_heads})")
        return self


class ModelSpec(Section):
    kind: Choice("reasoning", "instruct")
    hf_id: Text
    params_b: Number(gt=0, le=MAX_PARAMS_B)
    weight_gib: Number(ge=0, le=MAX_GIB)
    kv_bytes_per_token: Number(ge=1, le=MAX_KV_BYTES, integer=True)
    n_layers: Number(ge=1, le=10_000, integer=True)
    hidden_size: Number(ge=1, le=10_000_000, integer=True)
    load_time_s: Number(ge=0, le=MAX_SECONDS)
    output: Any
    sources: Texts = None
    accuracy: Any = Field(default=None, validate_default=True)
    cost: Any = None
    kv_capacity: Number(ge=1, le=MAX_KV_TOKENS, integer=True, optional=True) = None
    unload_time_s: Number(ge=0, le=MAX_SECONDS) = 0.0
    warmup_s: Number(ge=0, le=MAX_SECONDS) = 0.0
    session_fit: SessionFitSpec | None = None
    # This model's own TP scaling (experiments/profile_tp.py model=<name>), in place of the
    # engine's: a larger model shares more of its step across the ranks.
    tensor_parallel: TensorParallelSpec | None = None
    arch: ArchSpec | None = None

    @field_validator("output", mode="before")
    @classmethod
    def _output(cls, value: Any) -> Any:
        """One distribution {shape, mean_tokens, cap}, or per dataset {default: {...}, <dataset>: {...}}."""
        if not isinstance(value, Mapping):
            raise ValueError(f"expected {{shape, mean_tokens, cap}} or a mapping dataset -> {{shape, mean_tokens, "
                             f"cap}} with a 'default' entry, got {show(value)}")
        if set(value) & set(LengthSpec.model_fields):   # one distribution (perhaps missing a field)
            return nested(LengthSpec, value)
        if "default" not in value:
            raise ValueError(f"a per-dataset output needs a 'default' entry (used for datasets it does not list); "
                             f"has {sorted(map(str, value))}")
        out = {}
        for dataset, spec in value.items():
            _name(dataset, "dataset")
            if not isinstance(spec, Mapping):
                raise FieldError((dataset,), f"expected {{shape, mean_tokens, cap}}, got {show(spec)}")
            out[dataset] = nested(LengthSpec, spec, (dataset,))
        return out

    @field_validator("accuracy", mode="before")
    @classmethod
    def _accuracy(cls, value: Any) -> Any:
        return _probability_table(value)

    @field_validator("cost", mode="before")
    @classmethod
    def _cost(cls, value: Any) -> Any:
        if value is None or (isinstance(value, Mapping) and not value):
            return None
        if isinstance(value, Mapping):
            needed = [k for k in COST_KEYS if k != "seq_ms"]   # seq_ms: later fits; 0 when absent
            missing = [k for k in needed if k not in value]
            if missing:
                raise ValueError(f"missing {missing}; a measured cost model needs {needed} (and may give seq_ms)")
        return nested(CostSpec, value)

    def outputs(self) -> list[tuple[tuple[str, ...], LengthSpec]]:
        """(path below the model, distribution) of every output distribution."""
        if isinstance(self.output, LengthSpec):
            return [(("output",), self.output)]
        return [(("output", d), spec) for d, spec in self.output.items()]


class DatasetSpec(Section):
    """How difficulty couples answers and lengths on one dataset (mosaic/profiles/difficulty.py)."""

    difficulty_accuracy: Number(ge=0, le=100, optional=True) = None
    difficulty_length: Number(gt=-1, lt=1, optional=True) = None
    length_shared: Number(ge=0, lt=1, optional=True) = None
    distractor_share: Number(ge=0, le=1, optional=True) = None
    category_length: Any = None
    sources: Texts = None

    @field_validator("category_length", mode="before")
    @classmethod
    def _factors(cls, value: Any) -> Any:
        if value is None:
            return None
        check = ranged(gt=0, le=1e3)
        return _mapping_of(value, lambda c, f: _at((c,), check, f), "category")

    @model_validator(mode="after")
    def _loadings(self) -> "DatasetSpec":
        rho = DifficultyModel.length if self.difficulty_length is None else self.difficulty_length
        s = DifficultyModel.shared if self.length_shared is None else self.length_shared
        if rho ** 2 + s ** 2 >= 1.0:
            raise FieldError(("length_shared",), f"difficulty_length^2 + length_shared^2 must be < 1 (got {rho}^2 + "
                             f"{s}^2); lower one of them")
        return self


def _at(path: tuple[Any, ...], check: Callable[[Any], Any], value: Any) -> Any:
    try:
        return check(value)
    except FieldError:
        raise
    except ValueError as e:
        raise FieldError(path, str(e)) from None


class CalibratedModelSpec(Section):
    """One model's factors in a calibration record (mosaic/profiles/calibration.py)."""

    decode: Number(gt=0, le=1e3)
    prefill: Number(gt=0, le=1e3)
    step: Number(gt=0, le=1e3) = None
    how: String = ""
    error: Number(ge=0, le=1e6) = None
    ratio: Number(gt=0, le=1e3) = None
    spread: Number(ge=0, le=1e3) = None
    load_s: Number(ge=0, le=1e6) = None
    workers: Any = None


class CalibrationSpec(Section):
    """What a calibrated profile was scaled from (experiments/calibrate_profile.py writes it)."""

    base: String
    by: String = "experiments/calibrate_profile.py"   # or workload.calibrate: a run calibrated it
    when: String = ""
    tolerance: Number(gt=0, le=10) = None
    kept: Any = None
    models: Any

    @field_validator("models", mode="before")
    @classmethod
    def _models(cls, value: Any) -> Any:
        return _mapping_of(value, lambda n, v: nested(CalibratedModelSpec, v, (n,)), "model")


class ProfileFileSpec(Section):
    """A whole profile set."""

    engine: EngineSpec
    models: Any
    length_shapes: Any = Field(default=None, validate_default=True)
    datasets: Any = Field(default=None, validate_default=True)
    calibration: Any = None

    @field_validator("models", mode="before")
    @classmethod
    def _models(cls, value: Any) -> Any:
        def model(name: Any, m: Any) -> ModelSpec:
            if isinstance(name, str) and "#" in name:   # ids are query/model#sample: GLM's second would be GLM#2's
                raise FieldError((name,), "a model name may not hold '#', which marks a repeated sample in "
                                 "request ids (query/model#2); rename the model")
            return nested(ModelSpec, m, (name,))

        return _mapping_of(value, model, "model", allow_empty=False)

    @field_validator("length_shapes", mode="before")
    @classmethod
    def _shapes(cls, value: Any) -> Any:
        return {} if value is None else _mapping_of(value, shape_spec, "shape")

    @field_validator("datasets", mode="before")
    @classmethod
    def _datasets(cls, value: Any) -> Any:
        return {} if value is None else _mapping_of(value, lambda d, v: nested(DatasetSpec, v, (d,)), "dataset")

    @field_validator("calibration", mode="before")
    @classmethod
    def _calibration(cls, value: Any) -> Any:
        return None if value is None else nested(CalibrationSpec, value, ())

    @model_validator(mode="after")
    def _outputs_fit(self) -> "ProfileFileSpec":
        context = self.engine.max_model_len
        for name, m in self.models.items():
            for path, spec in m.outputs():
                at = ("models", name, *path)
                if spec.shape not in self.length_shapes:
                    raise FieldError((*at, "shape"), f"unknown shape '{spec.shape}'; length_shapes defines "
                                     f"{sorted(self.length_shapes)}")
                if spec.cap > context:
                    raise FieldError((*at, "cap"), f"must be <= engine.max_model_len ({context}): no answer is longer "
                                     f"than the context window (got {spec.cap})")
        hc = self.engine.host_contention
        for key in ("models", "by_batch"):
            for name in (getattr(hc, key) or {}) if hc is not None else ():
                if name not in self.models:
                    raise FieldError(("engine", "host_contention", key, name), f"no model '{name}' in this file "
                                     f"(models: {', '.join(sorted(self.models))})")
        return self


def validate_profiles(raw: Any, where: str) -> ProfileFileSpec:
    """`raw` (a parsed profile file) checked against the schema; a one-line ConfigError naming
    `where` (the file), the section or model, and the field otherwise."""
    if raw is None:
        raise ConfigError(f"{where}: the file is empty; a profile set needs 'engine' and 'models' sections")
    try:
        return ProfileFileSpec.model_validate(raw)
    except ValidationError as e:
        loc, msg, n = _first_error(e)
        more = f" (and {n - 1} more problem{'s' if n > 2 else ''} after it)" if n > 1 else ""
        raise ConfigError(message(where, loc, msg) + more) from None


def unusable_models(profiles: ProfileSet) -> dict[str, str]:
    """Models that cannot hold their weights plus one max_model_len sequence of KV cache on the
    profile's own engine (engine.memory_gib at gpu_memory_utilization, or the measured
    kv_capacity): name -> why. vLLM refuses to start such an engine."""
    engine, out = profiles.engine, {}
    for name, m in profiles.models.items():
        have = kv_capacity_tokens(m, engine, engine.memory_gib)
        if have < engine.max_model_len:
            if m.kv_capacity is not None:
                why = f"its measured kv_capacity ({m.kv_capacity} tokens)"
            else:
                need = m.weight_gib + engine.max_model_len * m.kv_bytes_per_token / GIB
                why = (f"weights {m.weight_gib} GiB + a {engine.max_model_len}-token KV cache = {need:.1f} GiB > "
                       f"{engine.memory_gib} GiB x gpu_memory_utilization {engine.gpu_memory_utilization}")
            out[name] = (f"models.{name} cannot hold one engine.max_model_len ({engine.max_model_len}-token) "
                         f"sequence: {why}; a run is refused where it would have to load it")
    return out
