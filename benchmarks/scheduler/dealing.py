"""A reference dealing for analyses that know every request's true output length: a plan's
replicas kept, each model's requests dealt to them again so the replica holding a long request
takes fewer other tokens.

Why: engine_aware deals by predicted lengths (category means), longest first to the replica with
the most predicted tokens still to take, which balances tokens; with the true lengths that is not
what a replica's time follows: a session runs about as many steps as its longest output, each
paying a fixed cost. The clairvoyant reference prices a session of known lengths
(mosaic/engine/floor.py `GroupCosts`: the step floor, the engine's batch profile, the KV
cache and max_num_seqs, the prefill) and splits a model's requests with `spread`: the longest
open the groups, every other request, longest first, to the group whose price ends lowest, so a
replica that holds a long request takes the short ones. Here `spread` fills the plan's own replicas,
each to its size. No real run has the true lengths; engine_aware keeps its own dealing for its
hints, which are category means, mostly noise around the true lengths.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Mapping, Sequence

from benchmarks.scheduler.clairvoyant import spread
from mosaic.engine import GroupCosts
from mosaic.costs.problem import StageProblem
from mosaic.costs.predict import attach_hints
from mosaic.plan import Plan
from mosaic.profiles import ProfileSet
from mosaic.workload.types import Request


def without_hints(problem: StageProblem) -> StageProblem:
    """The problem with no model's length hints: the plain stream split."""
    return replace(problem, models=tuple(replace(d, length_hints=None) for d in problem.models))


def with_true_hints(problem: StageProblem, outputs: Mapping[str, float]) -> StageProblem:
    """The problem with the true output lengths as every request's length hint (a reference only)."""
    return attach_hints(without_hints(problem), outputs)


def redeal(plan: Plan, requests: Sequence[Request], outputs: Mapping[str, float],
           profiles: ProfileSet, memory_gib: float) -> Plan:
    """The plan with every model's requests dealt again over its sessions (each keeps its count
    and its place on its worker, its requests in stream order) by `spread` on the true outputs,
    priced for workers of `memory_gib`. requests: the stage's, in stream order. Tensor-parallel
    sessions, listed on several workers, and models the step floor cannot price are left as they are."""
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
        ids = [r for slot in slots for r in new[slot]]
        mc = GroupCosts.of(profiles, model, [(r, prompt[r], int(outputs[r])) for r in ids], memory_gib)
        if mc is None:
            continue
        groups = spread(mc, len(slots), [len(new[slot]) for slot in slots])
        for slot, group in zip(slots, groups):
            new[slot] = tuple(sorted((mc.ids[i] for i in group), key=order.__getitem__))
    workers = tuple(replace(wp, sessions=tuple(replace(s, request_ids=new[wi, si]) for si, s in enumerate(wp.sessions)))
                    for wi, wp in enumerate(plan.workers))
    return replace(plan, workers=workers)
