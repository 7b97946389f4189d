"""Structured-config schemas for Hydra; the YAML under conf/ fills them in.

Hydra type-checks every override against these dataclasses, so `cluster.n_workers=four` fails
with a message naming the field before anything runs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class SchedulerConfig:
    name: str = MISSING
    max_models_per_worker: Optional[int] = None   # K; null = no limit
    replication_cap: Optional[int] = None         # R_m; null = clamp(1, floor(T_m / l_m), N)
    time_limit_s: float = 60.0    # wall-clock safety net only; node_limit is what stops the ILP
    mip_gap: float = 1e-4
    node_limit: int = 1000        # HiGHS branch-and-bound nodes: deterministic, load-independent
    solver_seed: int = 0          # HiGHS random_seed
    rr_order: str = "first_seen"  # round robin: first_seen (the paper's) | pool (fixed model order)
    cost_model: str = "auto"    # T_m predictor: auto | regression | analytic (mosaic/costs/predict.py)
    # How T_m splits over replicas: proportional (the paper's tau_m = T_m / N_m) | affine (each
    # replica also pays the session's fixed tail; mosaic/costs/predict.py)
    shard_cost: str = "proportional"


@dataclass
class BackendConfig:
    name: str = MISSING
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class WorkloadConfig:
    name: str = MISSING
    kind: str = "synthetic"
    preset: str = "mmlu_pro"
    n_queries: Optional[int] = None       # null = the preset's dataset size
    k: int = 3
    profiles: str = "moa6_a100"           # bundled profile set name, or a path to a YAML file
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
    dataset: Optional[str] = None
    questions_dir: str = "../shared/data/questions"
    traces_dir: str = "../shared/data/traces"
    prior_strength: float = 5.0           # router: Beta prior, in calibration questions
    experts: Optional[Any] = None         # trace kind: expert name -> {file, format, profile, lengths}
    aggregator: Optional[Any] = None      # trace kind: {file, format, profile}
    questions: Optional[str] = None       # trace kind: test question file in questions_dir
    calibration_questions: Optional[str] = None  # trace kind: calibration file; null = hold out calibration_size
    calibration_size: int = 0
    calibration_seed: int = 0             # calibration answers (questions kind) and split (trace kind): fixed per dataset, not per run


@dataclass
class ClusterConfig:
    name: str = MISSING
    n_workers: int = 4
    memory_gib: float = 80.0
    device: str = "A100-80GB"


@dataclass
class AggregationConfig:
    name: str = MISSING
    policy: str = "threshold"
    tau: Optional[float] = 1.0
    # "tp": one aggregator engine, tensor-parallel over all workers, the same in both arms (the
    # paper's); "scheduled": the stage's scheduler places the aggregator like an expert model.
    placement: str = "tp"


@dataclass
class ModelsConfig:
    name: str = MISSING
    cache_dir: Optional[str] = None
    engine: dict[str, Any] = field(default_factory=dict)   # vLLM EngineArgs shared by all models
    models: dict[str, Any] = field(default_factory=dict)   # name -> {hf_id | path | tiny, engine}


@dataclass
class MosaicConfig:
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)
    workload: WorkloadConfig = field(default_factory=WorkloadConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    aggregation: AggregationConfig = field(default_factory=AggregationConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    seed: int = 0


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="mosaic_schema", node=MosaicConfig)
