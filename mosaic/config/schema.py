"""The structured-config schema: every run setting is declared here, once, and validated here, once.

Hydra type-checks each override against these dataclasses (`cluster.n_workers=four` fails naming
the field). What a type cannot say (a negative seed, NaN, a choice outside its list) each section's
`__post_init__` checks when the run builder turns the composed config into these objects
(`OmegaConf.to_object`), before anything runs. Components read their settings from these objects
and never re-check or restate a default.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Optional

from mosaic.core.errors import ConfigError

# The choices of the settings that take one of a list; components import them from here.
COST_MODELS = ("auto", "regression", "analytic")
SHARD_COSTS = ("proportional", "affine")
RR_ORDERS = ("first_seen", "pool")
PLACEMENTS = ("tp", "scheduled")
AGGREGATION_POLICIES = ("always", "threshold")
OVERSIZE_POLICIES = ("reject", "truncate")
ROUTINGS = ("router", "paper_table3")
REPEAT_SAMPLES = ("replay", "resample")
COUPLINGS = ("measured", "assumed")


def _number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _integer(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def check_choice(field_name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{field_name}: '{value}' is not one of {list(choices)}")


def _check_range(field_name: str, value: Any, lo: float | None, hi: float | None, what: str) -> None:
    if value is None:
        return
    if not _number(value) or not math.isfinite(value) or (lo is not None and value < lo) \
            or (hi is not None and value > hi):
        bounds = ((f" in [{lo}, {hi}]" if hi is not None else f" >= {lo}") if lo is not None
                  else f" <= {hi}" if hi is not None else "")
        raise ConfigError(f"{field_name} must be a finite number{bounds}, {what} (got {value!r}); set {field_name} "
                          "to a value in that range")


@dataclass
class SchedulerConfig:
    name: str = "ilp"             # the placement policy, a registered scheduler (mosaic/schedulers/)
    max_models_per_worker: Optional[int] = None   # K, the most models one worker loads; null = no limit
    replication_cap: Optional[int] = None         # R_m, the most replicas of a model; null = clamp(1, floor(T_m / l_m), N)
    time_limit_s: float = 60.0    # wall-clock safety net only; node_limit is what stops the ILP
    mip_gap: float = 1e-4         # the ILP stops within this relative gap of the optimum
    node_limit: int = 1000        # HiGHS branch-and-bound nodes: deterministic, load-independent
    solver_seed: int = 0          # HiGHS random_seed
    rr_order: str = "first_seen"  # round robin: first_seen (the paper's) | pool (fixed model order)
    cost_model: str = "auto"      # T_m predictor: auto | regression | analytic (mosaic/costs/predict.py)
    # How T_m splits over replicas: proportional (the paper's tau_m = T_m / N_m) | affine (each
    # replica also pays the session's fixed tail; mosaic/costs/predict.py)
    shard_cost: str = "proportional"
    # engine_aware: local-search moves over all its starts (a count of work, so the plan never
    # depends on machine load)
    search_limit: int = 20000
    plugin: Optional[str] = None  # a module to import that registers `name` (a scheduler outside mosaic)

    def __post_init__(self) -> None:
        def bad(name: str, got: object, rule: str, fix: str) -> ConfigError:
            return ConfigError(f"scheduler.{name} must be {rule} (got {got!r}); {fix}")

        k, cap = self.max_models_per_worker, self.replication_cap
        if k is not None and (not _integer(k) or k < 1):
            raise bad("max_models_per_worker", k, "an integer >= 1 or null",
                      "set it to K >= ceil(models / workers), or null for no limit")
        if cap is not None and (not _integer(cap) or cap < 1):
            raise bad("replication_cap", cap, "an integer >= 1 or null",
                      "set it to the most workers one model may load on, or null for the paper's rule")
        if not _number(self.time_limit_s) or not 0 < self.time_limit_s <= 86400:
            raise bad("time_limit_s", self.time_limit_s, "in (0, 86400] seconds",
                      "set a generous wall-clock guard such as 60 (scheduler.node_limit bounds the work)")
        if not _number(self.mip_gap) or not 0 <= self.mip_gap <= 1:
            raise bad("mip_gap", self.mip_gap, "a relative gap in [0, 1]", "e.g. 1e-4")
        if not _integer(self.node_limit) or not 1 <= self.node_limit <= 2**31 - 1:
            raise bad("node_limit", self.node_limit, "an integer in [1, 2^31 - 1] (HiGHS's range)",
                      "e.g. 1000 (branch-and-bound nodes before the ILP returns its best plan)")
        if not _integer(self.solver_seed) or not 0 <= self.solver_seed <= 2**31 - 1:
            raise bad("solver_seed", self.solver_seed, "an integer in [0, 2^31 - 1]", "e.g. 0")
        if not _integer(self.search_limit) or self.search_limit < 0:
            raise bad("search_limit", self.search_limit, "an integer >= 0",
                      "e.g. 20000 (local-search moves engine_aware may make)")
        if self.rr_order not in RR_ORDERS:
            raise bad("rr_order", self.rr_order, " or ".join(RR_ORDERS),
                      "first_seen is the paper's round robin, pool the fixed model order")
        check_choice("scheduler.cost_model", self.cost_model, COST_MODELS)
        check_choice("scheduler.shard_cost", self.shard_cost, SHARD_COSTS)


@dataclass
class BackendConfig:
    name: str = "sim"             # what runs the plan: sim (the simulated cluster) | vllm (real engines)
    options: dict[str, Any] = field(default_factory=dict)   # passed to the backend's constructor
    plugin: Optional[str] = None  # a module to import that registers `name` (a backend outside mosaic)


RUNTIME_ORDERS = ("arrival", "longest_first", "auto")


@dataclass
class RuntimeConfig:
    """What decides while the run goes, between the plan and the backend (mosaic/runtime)."""
    # static: the plan's assignment | pull: late binding, work taken over from replicas not started,
    # replicas added | least_outstanding, p2c: routers that bind each request when released
    name: str = "static"
    # pull: the order of each replica's queue. arrival: the plan's; longest_first: longest predicted
    # output first (the calibration split's category means); auto: longest_first where the workload
    # has such length signals, else arrival. Default arrival: on the benchmark's question sets the
    # category means ordered worse than the plan (docs/runtime.md).
    order: str = "arrival"
    # pull: a worker done with its plan may load a model whose work waits on a replica not started
    # yet (K and memory held), where the wait outlasts two loads.
    add_replicas: bool = True
    # Online runs: move a replica from the model whose backlog drains soonest to the one whose
    # backlog drains last, once the latter's predicted drain time is more than replan_ratio times
    # the former's would be after the move, and more than two of its loads (docs/online.md).
    replan: bool = False
    replan_ratio: float = 3.0     # replan: the drain-time ratio past which a replica moves

    def __post_init__(self) -> None:
        check_choice("runtime.order", self.order, RUNTIME_ORDERS)
        for name in ("add_replicas", "replan"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"runtime.{name} must be true or false (got {getattr(self, name)!r})")
        _check_range("runtime.replan_ratio", self.replan_ratio, 1.0, 1000.0,
                     "how much longer one model's backlog must drain than another's before a replica moves")


ARRIVAL_KINDS = ("batch", "poisson", "gamma", "trace")
ENGINE_STARTS = ("warm", "cold")


@dataclass
class ArrivalsConfig:
    """When each query arrives (mosaic/workload/arrivals.py). batch: every query at once, the
    offline run (the flat pipeline then runs stage by stage). poisson, gamma, trace: queries
    arrive over time and are served as they come (online: every model stays loaded, a query's
    expert calls go out at its arrival, its aggregator when they finish; docs/online.md)."""
    name: str = "batch"           # the preset chosen (arrivals=...)
    kind: str = "batch"           # batch | poisson | gamma | trace
    # Queries per second: poisson and gamma's mean rate; trace: the recorded timestamps rescaled
    # to this mean rate (null: as recorded).
    rate: Optional[float] = None
    # gamma: the coefficient of variation of the gaps between arrivals (1 = poisson; > 1 bursts).
    cv: float = 1.0
    # trace: a CSV file with one row per arrival, in time order (e.g. the Azure LLM inference trace).
    path: Optional[str] = None
    # trace: its column of arrival times, seconds or date-times (the Azure files' TIMESTAMP).
    column: str = "TIMESTAMP"
    # warm: the engines are loaded before the first query arrives (time 0 of the arrivals is when
    # the last engine is ready); cold: arrivals count from the workers' start, loads included.
    engines: str = "warm"
    # Admission limit: a query that arrives while this many are unfinished is rejected (counted in
    # summary.json online.rejected, its requests recorded as cancelled by "admission"); null: none,
    # every query waits its turn however long the queues grow.
    max_in_system: Optional[int] = None

    def online(self) -> bool:
        return self.kind != "batch"

    def __post_init__(self) -> None:
        check_choice("arrivals.kind", self.kind, ARRIVAL_KINDS)
        check_choice("arrivals.engines", self.engines, ENGINE_STARTS)
        if self.rate is not None and (not _number(self.rate) or not math.isfinite(self.rate) or self.rate <= 0):
            raise ConfigError(f"arrivals.rate must be a number of queries per second > 0 (got {self.rate!r}); "
                              "e.g. arrivals.rate=2")
        if self.kind in ("poisson", "gamma") and self.rate is None:
            raise ConfigError(f"arrivals={self.kind} needs arrivals.rate, queries per second; e.g. arrivals.rate=2")
        if not _number(self.cv) or not math.isfinite(self.cv) or not 0.01 <= self.cv <= 100:
            raise ConfigError(f"arrivals.cv must be a coefficient of variation in [0.01, 100] (got {self.cv!r}); "
                              "1 is poisson, more is burstier")
        if self.kind != "gamma" and self.cv != 1.0:
            raise ConfigError(f"arrivals.cv shapes gamma arrivals only (arrivals.kind={self.kind}); remove it or "
                              "use arrivals=gamma")
        if self.kind == "trace":
            if not isinstance(self.path, str) or not self.path.strip():
                raise ConfigError("arrivals=trace needs arrivals.path, a CSV file of arrival times (e.g. "
                                  "arrivals.path=../shared/data/arrivals/azure_llm_2023_conv.csv)")
        elif self.path is not None or self.column != "TIMESTAMP":
            raise ConfigError(f"arrivals.path and arrivals.column are read by arrivals=trace only (arrivals.kind="
                              f"{self.kind}); remove them or use arrivals=trace")
        if self.max_in_system is not None and (not _integer(self.max_in_system) or self.max_in_system < 1):
            raise ConfigError(f"arrivals.max_in_system must be an integer >= 1 or null (got {self.max_in_system!r}): "
                              "the unfinished queries past which an arriving one is rejected")
        if self.kind == "batch":
            given = [f"arrivals.{k}" for k, v in (("rate", self.rate), ("max_in_system", self.max_in_system))
                     if v is not None] + (["arrivals.engines"] if self.engines != "warm" else [])
            if given:
                raise ConfigError(f"{', '.join(given)} set with arrivals=batch, where every query is there at "
                                  "the start; choose arrivals=poisson, gamma or trace, or remove them")


@dataclass
class SloConfig:
    """The latency objective of an online run (arrivals other than batch): a query meets it when its
    answer comes within `latency_s` of its arrival, or, with latency_s null, within `multiple` times
    its unloaded latency (its own requests alone on idle engines; mosaic/run/online.py)."""
    latency_s: Optional[float] = None   # seconds from a query's arrival to its answer; null: use multiple
    multiple: float = 5.0         # the SLO as a multiple of the query's unloaded latency (latency_s null)

    def __post_init__(self) -> None:
        _check_range("slo.latency_s", self.latency_s, 1e-6, None, "seconds from a query's arrival to its answer")
        _check_range("slo.multiple", self.multiple, 1.0, None, "a multiple of the query's unloaded latency")


# Workload fields read by the synthetic and question generators and the routers: name -> (lowest
# allowed, highest allowed, what it is). None = unbounded.
_WORKLOAD_RANGES: dict[str, tuple[float | None, float | None, str]] = {
    # Logit-scale settings: beyond +-1000 logits every probability is exactly 0 or 1 and sums of them
    # overflow, so a larger value is a typo, not a setting.
    "skill_spread": (0.0, 1000.0, "a standard deviation of per-category skill (logit scale)"),
    "routing_noise": (0.0, 1000.0, "the scale of the router's Gumbel noise (logit scale)"),
    "distractor_share": (0.0, 1.0, "the share of wrong answers that fall on the main distractor"),
    "prior_strength": (0.0, None, "the router's Beta-prior weight, in calibration questions"),
    # A run holds every request in memory (about 2 KiB a query): beyond this, split it into runs.
    "n_queries": (1, 1_000_000, "a number of queries (null: the dataset's size)"),
    "k": (1, None, "the number of experts each query is routed to"),
    "calibration_size": (0, None, "a number of held-out calibration questions"),
    "calibration_seed": (0, None, "a NumPy seed"),
    "aggregator_follow": (-1000.0, 1000.0, "the aggregator's logit gain per extra correct expert"),
    "difficulty_accuracy": (None, 1000.0, "the IRT discrimination (logit drop per unit of difficulty)"),
    "difficulty_length": (None, None, "the copula loading of output length on difficulty"),
    "length_shared": (None, None, "the copula loading of output length on verbosity"),
}


@dataclass
class WorkloadConfig:
    name: str = "synth_mmlu_pro"  # the preset chosen (workload=...)
    kind: str = "synthetic"               # a workload source (mosaic/workload/sources/)
    preset: str = "mmlu_pro"      # synthetic kind: the dataset whose category mix and lengths it draws
    n_queries: Optional[int] = None       # null = the preset's dataset size
    k: int = 3
    profiles: str = "moa6_a100"           # bundled profile set name, or a path to a YAML file
    # Before the run, time a few of the profiler's own batches per model the run serves on this
    # machine's vLLM engines (minutes) and run on `profiles` scaled to them (mosaic/run/calibration.py);
    # the run folder gets profile.calibrated.yaml, summary.json profile_calibration says what was scaled.
    calibrate: bool = False
    skill_spread: float = 0.4
    routing_noise: float = 0.15           # Gumbel noise of the without-replacement router
    routing: str = "router"               # "router" (Symbolic-MoE recruiter) | "paper_table3" (Table 3 counts)
    replacement: bool = True              # recruit k experts with replacement (Symbolic-MoE); false: distinct
    repeat_sample: str = "replay"         # trace kind: a repeated expert "replay"s its recorded output | "resample"
    # How difficulty couples answers and lengths (mosaic/profiles/difficulty.py): "measured" = the
    # profile set's per-dataset fit on real traces, "assumed" = the built-in values. Each of the
    # four numbers below, when set, overrides either.
    coupling: str = "measured"
    difficulty_accuracy: Optional[float] = None
    difficulty_length: Optional[float] = None
    length_shared: Optional[float] = None
    distractor_share: Optional[float] = None
    aggregator_follow: float = 0.8
    # Real question sets and traces (kinds "questions" and "trace").
    dataset: Optional[str] = None   # the question set (mmlu_pro, gpqa, ...): its files and the profiles' accuracy on it
    questions_dir: str = "../shared/data/questions"   # the question files (questions and trace kinds)
    traces_dir: str = "../shared/data/traces"         # the recorded model outputs (trace kind)
    prior_strength: float = 5.0           # router: Beta prior, in calibration questions
    experts: Optional[Any] = None         # trace kind: expert name -> {file, format, profile, lengths}
    aggregator: Optional[Any] = None      # trace kind: {file, format, profile}
    questions: Optional[str] = None       # trace kind: test question file in questions_dir
    calibration_questions: Optional[str] = None  # trace kind: calibration file; null = hold out calibration_size
    calibration_size: int = 0
    calibration_seed: int = 0             # calibration answers (questions kind) and split (trace kind): fixed per dataset, not per run
    plugin: Optional[str] = None          # a module to import that registers `kind` (a workload source outside mosaic)
    # A request the engine cannot serve as asked (prompt >= max_model_len, prompt + output beyond it,
    # or beyond the model's KV cache): "reject" stops the run before any stage, naming them;
    # "truncate" cuts the prompt (then the output) to fit and counts them in summary.json
    # admission.truncated_requests (mosaic/costs/predict.py admit_requests).
    oversize: str = "reject"

    def __post_init__(self) -> None:
        for name, (lo, hi, what) in _WORKLOAD_RANGES.items():
            _check_range(f"workload.{name}", getattr(self, name), lo, hi, what)
        # Checked whether or not this run's source reads them: a value outside the list is a typo
        # either way, and summary.json records what was given.
        check_choice("workload.oversize", self.oversize, OVERSIZE_POLICIES)
        check_choice("workload.routing", self.routing, ROUTINGS)
        check_choice("workload.repeat_sample", self.repeat_sample, REPEAT_SAMPLES)
        check_choice("workload.coupling", self.coupling, COUPLINGS)


MAX_WORKERS = 1024
MAX_MEMORY_GIB = 1e6   # GiB per worker: beyond any device, and far from overflowing the KV arithmetic


@dataclass
class ClusterConfig:
    name: str = "a100x4"          # the preset chosen (cluster=...)
    n_workers: int = 4            # GPU workers (one GPU each)
    memory_gib: float = 80.0      # each worker's GPU memory, GiB
    device: str = "A100-80GB"     # the GPU, matched against the device a profile was measured on
    # Workers sharing one host (its cores, memory bandwidth): in the simulator their engine steps
    # slow each other as the profile's engine.host_contention measured. 1: every worker on its own.
    workers_per_host: int = 1

    def __post_init__(self) -> None:
        # Here, not only where the cluster is built: a `-m` sweep checks every job's settings
        # before it runs any, and these are what that check sees.
        if not _integer(self.n_workers) or self.n_workers < 1:
            raise ConfigError(f"cluster.n_workers must be an integer >= 1 (got {self.n_workers!r}); set it to the "
                              "number of GPU workers")
        if not _number(self.memory_gib) or not self.memory_gib > 0:
            raise ConfigError(f"cluster.memory_gib must be > 0 (got {self.memory_gib!r}); set it to the GPU memory "
                              "in GiB")
        if not _integer(self.workers_per_host) or self.workers_per_host < 1:
            raise ConfigError(f"cluster.workers_per_host must be an integer >= 1 (got {self.workers_per_host!r}); "
                              "set it to how many workers share one machine's cores (1 for one GPU each)")
        if _integer(self.n_workers) and self.n_workers > MAX_WORKERS:
            raise ConfigError(f"cluster.n_workers must be at most {MAX_WORKERS} (got {self.n_workers}): every worker is "
                              "planned and simulated in one process; study larger clusters in parts")
        if _number(self.memory_gib) and (not math.isfinite(self.memory_gib) or self.memory_gib > MAX_MEMORY_GIB):
            raise ConfigError(f"cluster.memory_gib must be finite and at most {MAX_MEMORY_GIB:g} (got {self.memory_gib!r}); "
                              "set it to the GPU memory in GiB")


@dataclass
class AggregationConfig:
    """Confidence-aware adaptive aggregation (mosaic/run/aggregation.py)."""

    name: str = "tau1"            # the preset chosen (aggregation=...)
    policy: str = "threshold"             # "threshold": skip when agreement >= tau | "always"
    tau: Optional[float] = 1.0    # threshold: skip the aggregator when this share of the experts agree; null with always
    # "tp": one aggregator engine, tensor-parallel over all workers, the same in both arms (the
    # paper's); "scheduled": the stage's scheduler places the aggregator like an expert model.
    placement: str = "tp"

    def __post_init__(self) -> None:
        if self.policy not in AGGREGATION_POLICIES:
            raise ConfigError(f"aggregation.policy: unknown policy '{self.policy}'; use 'always' or 'threshold'")
        # `always` never reads tau: accepting one would record a threshold the run did not apply.
        if self.policy == "always" and self.tau is not None:
            raise ConfigError(f"aggregation.tau must be null with aggregation.policy=always (got {self.tau}); "
                              "set aggregation.tau=null, or use aggregation.policy=threshold to gate on tau")
        if self.policy == "threshold" and (self.tau is None or not _number(self.tau)
                                           or not 0.0 < self.tau <= 1.0):
            raise ConfigError(f"aggregation.tau must be in (0, 1] for the threshold policy (got {self.tau})")
        if self.placement not in PLACEMENTS:
            raise ConfigError(f"aggregation.placement: '{self.placement}' is not one of {', '.join(PLACEMENTS)}")


SCHEDULING_MODES = ("v0", "v1")


@dataclass
class EngineConfig:
    """How the simulated engine schedules steps. null = as the profiles record for the engine they
    were measured on (engine.scheduling in the profile file); v0 or v1 overrides it."""

    scheduling: Optional[str] = None   # v0 | v1 | null (as the profile records)
    # Every engine's KV cache is exactly this many blocks (of the profile's engine.block_size), on
    # both backends (vLLM: num_gpu_blocks_override): to study memory pressure and preemption on small
    # machines. null = what the memory gives (the profile's measured capacity, or weights vs memory).
    num_gpu_blocks: Optional[int] = None

    def __post_init__(self) -> None:
        if self.scheduling is not None and self.scheduling not in SCHEDULING_MODES:
            raise ConfigError(f"engine.scheduling: '{self.scheduling}' is not one of v0, v1 (or null = the "
                              "profile's); v1 = vLLM V1 (chunked prefill, one token budget per step), v0 = "
                              "prefill-first steps")
        if self.num_gpu_blocks is not None and (not _integer(self.num_gpu_blocks) or self.num_gpu_blocks < 2):
            raise ConfigError(f"engine.num_gpu_blocks must be an integer >= 2 or null (got {self.num_gpu_blocks!r}); "
                              "it is the KV cache size in blocks, one of them vLLM's null block")


@dataclass
class ModelsConfig:
    name: str = "paper"           # the preset chosen (models=...)
    cache_dir: Optional[str] = None   # where tiny local models are built; null: $MOSAIC_CACHE/tiny_models (default ~/.cache/mosaic)
    engine: dict[str, Any] = field(default_factory=dict)   # vLLM EngineArgs shared by all models
    models: dict[str, Any] = field(default_factory=dict)   # name -> {hf_id | path | tiny, engine}


TOPOLOGY_KINDS = ("flat", "dense", "tree")
# Agents in one layer of a graph (a dense layer, a tree's leaves): beyond it a query is no MoA a
# machine serves (a dense layer's successor reads every output of the layer below).
MAX_LAYER_AGENTS = 4096
EARLY_EXITS = ("none", "qmetric", "agreement")
OVERLAPS = ("none", "incremental")
GRAPH_PLACEMENTS = ("demand", "even", "scheduler")


@dataclass
class TopologyConfig:
    """The shape of the MoA graph each query runs (mosaic/graphs/). `flat` is MOSAIC's pipeline:
    k routed experts, then the aggregator, stage by stage over the whole dataset. `dense` and
    `tree` run each query as a graph of agent requests, a request released when its precursors are
    done (or cancelled), `concurrency` queries in flight at a time (Faster-MoA's setting)."""

    name: str = "flat"            # the preset chosen (topology=...)
    kind: str = "flat"            # flat | dense | tree
    # Agents per layer below the aggregator. dense: each agent reads every output of the layer below
    # (all-to-all), e.g. [9, 9] = Faster-MoA's 9-9-1 baseline; tree: each layer's agents in as many
    # clusters as the next layer has agents, e.g. [3, 2] (or leave it empty: branching and depth).
    layers: list[int] = field(default_factory=list)
    branching: int = 3            # tree: precursor agents per successor (a cluster)
    depth: int = 2                # tree: agent layers below the root (3^2 = 9 leaves, 3 successors, 1 root)
    # Models of the agents: dense cycles them over each layer's agents; tree gives cluster position
    # i the i-th (one small, one medium, one large model per cluster in Faster-MoA).
    agents: list[str] = field(default_factory=list)
    aggregator: Optional[str] = None   # the root's model; null = the workload's aggregator
    # The agents' profile set (bundled name or YAML path), when they are not the workload's models:
    # the workload then gives the questions only. null = workload.profiles.
    profiles: Optional[str] = None
    # Cancel the rest of a cluster (tree) or layer (dense) once its finished agents are confident
    # and agree: qmetric = Faster-MoA's Algorithm 1 (with probability Q = sqrt(C * B)), agreement =
    # when every finished answer (two at least) is the same. Seeded by the run's seed.
    early_exit: str = "none"
    exit_tau: float = 0.7         # qmetric: the similarity target tau of B = 1 - |P - tau| / tau
    concurrency: int = 1          # queries in flight; the next starts when one finishes
    # Dependency-aware prefill overlap (Faster-MoA): incremental = a successor's prompt is
    # prefilled while its precursors run (its prefix when they start, each precursor's output when
    # it finishes, the last one's in chunks of overlap_chunk tokens as it streams), through the
    # engine's prefix cache, so at release only the rest is prefilled.
    overlap: str = "none"
    overlap_chunk: int = 64       # incremental overlap: tokens per chunk of a streaming precursor's output
    # Workers per model (every model of the graph stays loaded): demand = one each, the rest by
    # expected output tokens per query (load-aware); even = in turn; scheduler = the configured
    # scheduler (scheduler.name, e.g. ilp) places the graph's whole demand with one model per worker.
    placement: str = "demand"

    def largest_cluster(self) -> int:
        """Agents in the largest early-exit cluster (mosaic/graphs/shape.py: a dense layer; a tree
        layer split near-evenly into as many clusters as the next layer has agents)."""
        if self.kind == "dense":
            return max(self.layers)
        sizes = list(self.layers) or [self.branching ** (self.depth - i) for i in range(self.depth)]
        return max(-(-n // m) for n, m in zip(sizes, [*sizes[1:], 1]))

    def __post_init__(self) -> None:
        check_choice("topology.kind", self.kind, TOPOLOGY_KINDS)
        check_choice("topology.early_exit", self.early_exit, EARLY_EXITS)
        check_choice("topology.overlap", self.overlap, OVERLAPS)
        check_choice("topology.placement", self.placement, GRAPH_PLACEMENTS)
        if self.kind == "flat":
            given = [f"topology.{k}" for k, v in (("layers", list(self.layers)), ("agents", list(self.agents)),
                                                  ("aggregator", self.aggregator), ("profiles", self.profiles),
                                                  ("early_exit", self.early_exit), ("overlap", self.overlap))
                     if v not in ([], None, "none")]
            given += ["topology.placement"] if self.placement != "demand" else []
            given += [f"topology.{k}" for k, d in (("branching", 3), ("depth", 2), ("exit_tau", 0.7),
                                                   ("concurrency", 1), ("overlap_chunk", 64)) if getattr(self, k) != d]
            if given:
                raise ConfigError(f"{', '.join(given)} set with topology.kind=flat, which runs the MOSAIC pipeline "
                                  "and reads none of them; choose topology=dense or topology=tree, or remove them")
            return
        if self.kind == "dense" and (self.branching != 3 or self.depth != 2):
            raise ConfigError("topology.branching and topology.depth shape a tree; a dense graph's shape is "
                              "topology.layers: remove them, or use topology=tree")
        if self.kind == "dense" and (not self.layers or any(not _integer(n) or not 1 <= n <= MAX_LAYER_AGENTS
                                                            for n in self.layers)):
            raise ConfigError(f"topology.layers must list the agents per layer, each in [1, {MAX_LAYER_AGENTS}], for a "
                              f"dense graph (got {list(self.layers)}); e.g. topology.layers=[9,9]")
        if self.kind == "tree" and self.layers:
            sizes = list(self.layers)
            if self.branching != 3 or self.depth != 2:
                raise ConfigError("topology.layers gives the tree's shape itself: leave topology.branching and "
                                  "topology.depth out (they shape a tree without layers)")
            if (any(not _integer(n) or not 1 <= n <= MAX_LAYER_AGENTS for n in sizes)
                    or any(a < b for a, b in zip(sizes, sizes[1:]))):
                raise ConfigError(f"topology.layers of a tree must be agents per layer, each in [1, {MAX_LAYER_AGENTS}] and none more "
                                  f"than the layer below (got {sizes}); e.g. topology.layers=[3,2]")
        elif self.kind == "tree":
            if not _integer(self.branching) or not 2 <= self.branching <= 64:
                raise ConfigError(f"topology.branching must be an integer in [2, 64] (got {self.branching!r})")
            if not _integer(self.depth) or not 1 <= self.depth <= 6 or self.branching ** self.depth > MAX_LAYER_AGENTS:
                raise ConfigError(f"topology.depth must be an integer in [1, 6] with at most {MAX_LAYER_AGENTS} leaves "
                                  f"(got depth {self.depth!r}, branching {self.branching})")
        if self.aggregator is not None and (not isinstance(self.aggregator, str) or not self.aggregator.strip()):
            raise ConfigError(f"topology.aggregator must name the root's model (a profile name), or be null for the "
                              f"workload's aggregator (got {self.aggregator!r})")
        if not self.agents or not all(isinstance(a, str) and a for a in self.agents):
            raise ConfigError(f"topology.agents must name the agents' models (profile names), e.g. "
                              f"topology.agents=[Qwen,Gemma,LlamaR1] (got {list(self.agents)})")
        if self.kind == "tree" and not self.layers and len(self.agents) != self.branching:
            raise ConfigError(f"topology.agents gives {len(self.agents)} models for clusters of "
                              f"topology.branching={self.branching}: give one model per cluster position")
        widest = self.largest_cluster()   # cluster position p runs agents[p % len(agents)]
        if len(self.agents) > widest:
            unit = "layer" if self.kind == "dense" else "cluster"
            raise ConfigError(f"topology.agents lists {len(self.agents)} models, but the graph's largest {unit} has "
                              f"{widest} agent(s), so {', '.join(self.agents[widest:])} would never run; list at most "
                              f"{widest} models or widen topology.layers")
        _check_range("topology.exit_tau", self.exit_tau, 1e-6, 1.0, "the pairwise similarity early exit aims at")
        if self.early_exit != "none" and self.largest_cluster() < 3:
            raise ConfigError(f"topology.early_exit={self.early_exit} can never cancel an agent here: it decides once "
                              f"two agents of a cluster have finished, and the largest cluster has "
                              f"{self.largest_cluster()}; use clusters of 3 or more agents or topology.early_exit=none")
        if self.early_exit != "qmetric" and self.exit_tau != 0.7:
            raise ConfigError(f"topology.exit_tau is read by topology.early_exit=qmetric only (got early_exit="
                              f"{self.early_exit}); remove it or use the qmetric rule")
        if not _integer(self.overlap_chunk) or not 1 <= self.overlap_chunk <= 1_000_000:
            raise ConfigError(f"topology.overlap_chunk must be an integer number of tokens in [1, 1000000] (got "
                              f"{self.overlap_chunk!r})")
        if self.overlap == "none" and self.overlap_chunk != 64:
            raise ConfigError("topology.overlap_chunk is read by topology.overlap=incremental only; remove it or "
                              "set topology.overlap=incremental")
        if not _integer(self.concurrency) or not 1 <= self.concurrency <= 100_000:
            raise ConfigError(f"topology.concurrency must be an integer in [1, 100000] (got {self.concurrency!r}): "
                              "the queries in flight at once")


@dataclass
class MosaicConfig:
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    workload: WorkloadConfig = field(default_factory=WorkloadConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    aggregation: AggregationConfig = field(default_factory=AggregationConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    topology: TopologyConfig = field(default_factory=TopologyConfig)
    arrivals: ArrivalsConfig = field(default_factory=ArrivalsConfig)
    slo: SloConfig = field(default_factory=SloConfig)
    seed: int = 0                 # the workload's and the simulator's random draws: same seed, same result

    def __post_init__(self) -> None:
        if not _integer(self.seed) or self.seed < 0:
            raise ConfigError(f"seed must be an integer >= 0 (got {self.seed!r}); NumPy seeds are non-negative, "
                              "use e.g. seed=0")
        t = self.topology
        if t.kind != "flat":
            # Every model of an agent graph stays loaded on a worker of its own (mosaic/graphs/placement.py).
            # The models the settings name are known here (the workload's aggregator, where
            # topology.aggregator is null, only when the run is built), so a sweep's check sees them.
            models = list(dict.fromkeys([*t.agents[:t.largest_cluster()], *([t.aggregator] if t.aggregator else [])]))
            check_graph_workers(models, self.cluster.n_workers)


def check_graph_workers(models: list[str], n_workers: int) -> None:
    """An agent graph keeps each of its models loaded on a worker of its own."""
    if n_workers < len(models):
        raise ConfigError(f"topology: the graph's {len(models)} models ({', '.join(models)}) stay loaded on a worker "
                          f"each, but cluster.n_workers={n_workers}; set cluster.n_workers >= {len(models)} or "
                          "use fewer agent models")


# The mappings whose entries are named things (a trace's expert files, its aggregator's file spec,
# the models a registry holds): one given whole on the command line replaces the preset's
# (mosaic/config/mappings.py). The other free-form mappings are options with defaults
# (backend.options, models.engine): a dict given for them merges, as Hydra merges.
WHOLE_MAPPINGS = ("workload.experts", "workload.aggregator", "models.models")


def settings(cls: type | None = None, prefix: str = ""):
    """Every setting of the schema, depth first: (dotted path, the dataclass declaring it, its name,
    its type)."""
    import typing

    cls = MosaicConfig if cls is None else cls
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        if hasattr(hints[f.name], "__dataclass_fields__"):
            yield from settings(hints[f.name], f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", cls, f.name, hints[f.name]


def free_form_mappings() -> tuple[str, ...]:
    """The settings that are mappings (workload.experts, models.models, backend.options, ...)
    rather than fixed fields: a command line adds an entry with `+key.NAME=...` and drops one with
    `~key.NAME` (mosaic/cli/precheck.py); those in WHOLE_MAPPINGS it replaces with `key={...}`."""
    import typing

    return tuple(path for path, _cls, _name, hint in settings()
                 if hint is Any or typing.get_origin(hint) is dict or Any in typing.get_args(hint))


def register_configs() -> None:
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="mosaic_schema", node=MosaicConfig)
