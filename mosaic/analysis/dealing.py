"""A reference dealing for analyses that know every request's true output length: a plan's
replicas kept, each model's requests dealt to them again so the replica holding a long request
takes fewer other tokens.

Why: engine_aware deals by predicted lengths (category means), longest first to the replica with
the most predicted tokens still to take, which balances tokens; with the true lengths that is not
what a replica's time follows. By the engine's step model (mosaic/profiles/cost_model.py) a
session runs about as many steps as its longest output, each paying a fixed cost, plus each
request's own per-step and attention cost, so a replica's time is about
    F o_max + sum_r g_r,   g_r = ((o_r - 1) c + a ((o_r - 1) p_r + o_r (o_r - 1) / 2)) / 1000,
F the step's fixed cost (overhead and the least linear term), c a sequence's share of a step and a
the cost per context token attended, in ms (CostModel.decode_floor). Dealt longest first, each
request to the replica (with requests still to take) where that sum ends lowest: a replica that
holds a long request takes the short ones. Measured on the benchmark's 50 instances
(experiments/information_gap.py): faster in simulation than the token-balancing dealing on most
instances and slower on a few (the sum leaves out KV-cache limits and prefills), so analyses take
it as one more plan made with the lengths known, never as the only one. No real run has the true
lengths; engine_aware keeps its own dealing for its hints, which are category means, mostly noise
around the true lengths.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Mapping, Sequence

import numpy as np

from mosaic.plan import Plan
from mosaic.profiles import ProfileSet
from mosaic.profiles.cost_model import CostModel
from mosaic.workload.types import Request


def step_terms(profiles: ProfileSet, model: str) -> tuple[float, float, float]:
    """(F, c, a) in ms: a step's fixed cost, a sequence's share of a step, the cost per context token."""
    overhead, per_seq, lin_min, per_token, ctx, _ = CostModel(profiles.model(model), profiles.engine).decode_floor()
    return overhead + max(lin_min, 0.0), per_seq + max(per_token, 0.0), ctx


def deal_by_cost(outputs: np.ndarray, prompts: np.ndarray, counts: Mapping[int, int],
                 terms: tuple[float, float, float]) -> dict[int, list[int]]:
    """Indices of the requests each replica serves (counts[replica] of them), longest first to
    the replica where F o_max + sum g ends lowest (ties: the lower replica key)."""
    f, c, a = terms
    dec = np.maximum(outputs - 1.0, 0.0)
    g = (dec * c + a * (dec * prompts + outputs * dec / 2.0)) / 1e3
    top = {w: 0.0 for w in counts}
    busy = {w: 0.0 for w in counts}
    left = dict(counts)
    picked: dict[int, list[int]] = {w: [] for w in counts}
    for i in sorted(range(len(outputs)), key=lambda i: (-outputs[i], i)):
        w = min((w for w in left if left[w] > 0),
                key=lambda w: (f * max(top[w], outputs[i]) / 1e3 + busy[w] + g[i], w))
        picked[w].append(i)
        top[w] = max(top[w], float(outputs[i]))
        busy[w] += g[i]
        left[w] -= 1
    return picked


def redeal(plan: Plan, requests: Sequence[Request], outputs: Mapping[str, float],
           profiles: ProfileSet) -> Plan:
    """The plan with every model's requests dealt again over its sessions (each keeps its count
    and its place on its worker, its requests in stream order) by `deal_by_cost` on the true
    outputs. requests: the stage's, in stream order. Tensor-parallel sessions, listed on several
    workers, are left as they are."""
    order = {r.id: i for i, r in enumerate(requests)}
    prompt = {r.id: r.prompt_tokens for r in requests}
    where: dict[str, list[tuple[int, int]]] = {}   # model -> (worker index, session index)
    for wi, wp in enumerate(plan.workers):
        for si, s in enumerate(wp.sessions):
            if not s.workers:
                where.setdefault(s.model, []).append((wi, si))
    new = {(wi, si): s.request_ids for wi, wp in enumerate(plan.workers) for si, s in enumerate(wp.sessions)}
    for model, slots in where.items():
        if len(slots) < 2:
            continue
        ids = sorted((r for slot in slots for r in new[slot]), key=order.__getitem__)
        counts = {k: len(new[slot]) for k, slot in enumerate(slots)}
        picked = deal_by_cost(np.array([float(outputs[r]) for r in ids]),
                              np.array([float(prompt[r]) for r in ids]), counts,
                              step_terms(profiles, model))
        for k, slot in enumerate(slots):
            new[slot] = tuple(ids[i] for i in sorted(picked[k]))
    workers = tuple(replace(wp, sessions=tuple(replace(s, request_ids=new[wi, si]) for si, s in enumerate(wp.sessions)))
                    for wi, wp in enumerate(plan.workers))
    return replace(plan, workers=workers)
