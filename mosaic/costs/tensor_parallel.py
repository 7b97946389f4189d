"""The stage problem when one engine spans every worker with tensor parallelism (the paper's
aggregator: one instance, TP over all 4 GPUs, the same in both arms).

Like mosaic.costs.predict.build_problem, but each model is costed as a TP-N engine: the TP step speedup
and load overhead from the profile's engine section, and the KV cache of the combined memory.
"""
from __future__ import annotations

from typing import Iterable, Sequence

from mosaic.cluster import Cluster
from mosaic.costs.predict import group_by_model, predict_session_s, refuse_unfitting_tp
from mosaic.costs.problem import ModelDemand, StageProblem
from mosaic.profiles import ProfileSet, kv_capacity_tokens, load_time_s, tp_warmup_s
from mosaic.workload.types import Request


def build_tp_problem(stage: str, requests: Sequence[Request], cluster: Cluster, profiles: ProfileSet,
                     model_order: Iterable[str] = ()) -> StageProblem:
    """Every model fits 'every worker' when one TP-N engine over the whole cluster holds its weights
    plus a full-length sequence; vLLM gives every rank the same memory, so the smallest GPU counts."""
    tp = cluster.n
    engine = profiles.engine
    by_model, first_seen, order = group_by_model(requests, model_order)
    if tp > 1:  # fail before scheduling if the profile has no scaling for this degree
        for name in order:
            profiles.model(name).tp(engine, tp).speedup(tp)
    memory = min(w.memory_gib for w in cluster.workers)
    demands, fits = [], {}
    for name in order:
        prof = profiles.model(name)
        if kv_capacity_tokens(prof, engine, memory, tp) < engine.max_model_len:
            refuse_unfitting_tp(name, engine, memory, tp)
        fits[name] = frozenset(w.id for w in cluster.workers)
        reqs = by_model[name]
        mean_prompt = sum(r.prompt_tokens for r in reqs) / len(reqs)
        demands.append(ModelDemand(
            model=name,
            request_ids=tuple(r.id for r in reqs),
            load_s=load_time_s(prof, engine, tp) + prof.unload_time_s + tp_warmup_s(prof, engine, tp),
            session_s=predict_session_s(prof, engine, memory, len(reqs), mean_prompt, tp=tp),
            first_seen=first_seen[name],
        ))
    return StageProblem(stage=stage, models=tuple(demands), n_workers=cluster.n, fits=fits)
