"""Helpers the policies share: turning per-worker assignments into a Plan with predicted times."""
from __future__ import annotations

import heapq

from mosaic.costs.problem import StageProblem, predict_makespan
from mosaic.plan import Plan, Session, SolverInfo, WorkerPlan


def split_counts(request_ids: tuple[str, ...], counts: dict[int, int]) -> dict[int, tuple[str, ...]]:
    """Deal a model's requests to workers in the given counts, interleaved in stream order so each
    replica gets a similar mix of prompts (largest remaining quota first, ties to the lower id)."""
    assert sum(counts.values()) == len(request_ids), (counts, len(request_ids))
    left = {w: c for w, c in counts.items() if c > 0}
    out: dict[int, list[str]] = {w: [] for w in left}
    # A heap of (-share left, worker): its top is the max of (share left, -worker); only the
    # picked worker's share changes, so a pick costs log(workers), not a scan of them.
    heap = [(-1.0, w) for w in left]
    heapq.heapify(heap)
    for rid in request_ids:
        _, w = heapq.heappop(heap)
        out[w].append(rid)
        left[w] -= 1
        if left[w]:
            heapq.heappush(heap, (-(left[w] / counts[w]), w))
    return {w: tuple(v) for w, v in out.items()}


def even_counts(n: int, workers: list[int]) -> dict[int, int]:
    q, r = divmod(n, len(workers))
    return {w: q + (1 if i < r else 0) for i, w in enumerate(workers)}


def make_plan(problem: StageProblem, policy: str,
              assignment: dict[int, list[tuple[str, tuple[str, ...]]]],
              solver: SolverInfo | None = None, params: dict[str, float] | None = None) -> Plan:
    """assignment: worker -> ordered [(model, request ids)]. Empty sessions are dropped: loading a
    model with nothing to run only costs time."""
    demand = {d.model: d for d in problem.models}
    sessions = [tuple(Session(m, ids) for m, ids in assignment.get(w, []) if ids) for w in range(problem.n_workers)]
    means, sds, expected = predict_makespan([[(demand[s.model], len(s.request_ids)) for s in ss] for ss in sessions])
    workers = tuple(WorkerPlan(w, ss, m, sd) for w, (ss, m, sd) in enumerate(zip(sessions, means, sds)))
    return Plan(problem.stage, policy, workers, solver, params or {}, expected)


def fitting(problem: StageProblem, model: str) -> list[int]:
    return sorted(problem.fits[model])
