"""The engine section of a profile set: one GPU's vLLM-style engine and its tensor-parallel scaling."""
from __future__ import annotations

from dataclasses import dataclass


from mosaic.core.errors import ConfigError


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
