"""What a model takes on a worker: the KV-cache tokens left beside its weights, and an engine's
start-up (load and tensor-parallel warm-up). Step costs are the engine layer's (mosaic/engine/)."""
from __future__ import annotations

from mosaic.profiles.engine import EngineProfile
from mosaic.profiles.models import ModelProfile

GIB = 1024**3


def kv_capacity_tokens(model: ModelProfile, engine: EngineProfile, memory_gib: float, tp: int = 1) -> int:
    """KV-cache tokens left on a GPU of `memory_gib` after the weights, as vLLM sizes it (or as the
    real engine reported, when the profile was measured).

    With tp GPUs each rank keeps 1/tp of the weights and 1/tp of every token's KV (heads are split),
    so the engine holds (tp * memory * utilisation - one copy of the weights) / KV bytes per token.
    A measured single-GPU capacity C gives the same: tp * C plus the (tp - 1) weight copies freed,
    and never more than the memory allows (a cluster of smaller GPUs than the profiler's).
    engine.num_gpu_blocks (a configured override) sets it outright, as vLLM's does."""
    if engine.num_gpu_blocks is not None:
        return engine.num_gpu_blocks * engine.block_size
    free = tp * memory_gib * engine.gpu_memory_utilization - model.weight_gib
    room = max(0, int(free * GIB // model.kv_bytes_per_token))
    if model.kv_capacity is not None:
        return min(room, tp * model.kv_capacity + (tp - 1) * int(model.weight_gib * GIB // model.kv_bytes_per_token))
    return room


def load_time_s(model: ModelProfile, engine: EngineProfile, tp: int = 1) -> float:
    """Engine start-up for a session of `model` over tp GPUs (l_m, plus the TP overhead)."""
    return model.load_time_s + (model.tp(engine, tp).load_overhead(tp) if tp > 1 else 0.0)


def tp_warmup_s(model: ModelProfile, engine: EngineProfile, tp: int = 1) -> float:
    """What a fresh TP-`tp` engine's first request takes beyond a TP=1 engine's (model.warmup_s)."""
    return model.tp(engine, tp).warmup(tp) if tp > 1 else 0.0
