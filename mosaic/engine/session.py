"""A session of one model on a fresh engine: the engine the simulator steps, and its wall time.

`session_engine` builds the engine a session runs on (V0 or V1 scheduling, as the profile says),
sized by the worker's memory; `run_session` runs a batch submitted at once on it and returns its
wall seconds. This is the one simulation of a session: the simulator backend steps the same
engines through SimPy, and the planner's session curves, the session-cost fits and the scheduler
benchmark's bound and references price sessions with `run_session` (or `session_runner`).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from mosaic.engine.step_cost import CostModel
from mosaic.engine.v0 import BatchEngine
from mosaic.engine.v1 import V1Engine
from mosaic.profiles import EngineProfile, ModelProfile, ProfileSet, kv_capacity_tokens, tp_warmup_s

Batch = list[tuple[str, int, int]]   # (request id, prompt tokens, output tokens)

_COSTS: dict[tuple[int, int, int], tuple[ModelProfile, EngineProfile, CostModel]] = {}


def cost_model(model: ModelProfile, engine: EngineProfile, tp: int = 1) -> CostModel:
    """One CostModel per (profile, engine, TP) object, so its memo of step costs outlives a session
    (session curves run thousands). Keyed by identity, the objects kept alive beside it so an id
    is never reused while cached; profiles are not hashable (they hold dicts)."""
    key = (id(model), id(engine), tp)
    hit = _COSTS.get(key)
    if hit is None or hit[0] is not model or hit[1] is not engine:
        if len(_COSTS) > 512:
            _COSTS.clear()
        hit = _COSTS[key] = (model, engine, CostModel(model, engine, tp))
    return hit[2]


def usable_kv_tokens(model: ModelProfile, engine: EngineProfile, memory_gib: float, tp: int = 1) -> int:
    """Tokens an engine's KV cache holds for requests: V1 sizes it in whole blocks and keeps one as
    its null block; V0 holds all of it. A request's whole context must fit in it."""
    kv = kv_capacity_tokens(model, engine, memory_gib, tp)
    return max(0, kv // engine.block_size - 1) * engine.block_size if engine.scheduling == "v1" else kv


def session_engine(model: ModelProfile, engine: EngineProfile, memory_gib: float,
                   tp: int = 1) -> BatchEngine | V1Engine:
    """A fresh engine for one session of `model` over `tp` GPUs of `memory_gib` each (vLLM gives
    every rank the same share, so the smallest GPU's memory is the one to pass), scheduling steps
    as the profiled engine does (engine.scheduling)."""
    kv = usable_kv_tokens(model, engine, memory_gib, tp)
    cost = cost_model(model, engine, tp)
    if engine.scheduling == "v1":
        return V1Engine(cost, kv // engine.block_size, engine.block_size, engine.max_num_seqs,
                        engine.max_num_batched_tokens, prefix_caching=engine.prefix_caching,
                        submit_s=engine.submit_ms / 1e3)
    return BatchEngine(cost, kv, engine.max_num_seqs, engine.max_num_batched_tokens)


def warmup_s(model: ModelProfile, engine: EngineProfile, tp: int = 1) -> float:
    """A fresh engine's one-off set-up in its first steps (the profiler's measure; TP ranks more)."""
    return model.warmup_s + tp_warmup_s(model, engine, tp)


def run_session(model: ModelProfile, engine: EngineProfile, memory_gib: float, batch: Batch,
                tp: int = 1) -> float:
    """Wall seconds of one session alone on a fresh engine, load excluded: every request of `batch`
    submitted at once at time 0."""
    eng = session_engine(model, engine, memory_gib, tp)
    clock = warmup_s(model, engine, tp)
    for dt in eng.run(batch, lambda: clock):
        clock += dt
    return clock


# (prompt tokens, output tokens) of a session's requests -> its wall seconds, load excluded.
RunSession = Callable[[np.ndarray, np.ndarray], float]


def session_runner(profiles: ProfileSet, memory_gib: float) -> Callable[[str], RunSession]:
    """model -> a function of (prompt tokens, output tokens) arrays giving one session's wall
    seconds on a worker of `memory_gib` (run_session; what session curves are built from)."""
    def of(model: str) -> RunSession:
        prof = profiles.model(model)

        def run(prompts, outputs) -> float:
            # tolist(): Python ints in one call; int() on each numpy scalar is slow at the ~10^6
            # requests the curves of one plan simulate
            ps, outs = np.asarray(prompts).astype(int).tolist(), np.asarray(outputs).astype(int).tolist()
            return run_session(prof, profiles.engine, memory_gib,
                               [(str(i), p, o) for i, (p, o) in enumerate(zip(ps, outs))])
        return run
    return of
