"""A replicating greedy for the ILP's problem: the ILP's warm start and its floor.

1. Replicas: starting from one per model, repeatedly give the model with the longest per-replica
   time l_m + f_m + (T_m - f_m) / r_m one more replica (within R_m and the K*N worker slots).
2. Placement, for every replica vector on that path: replicas as shards with even request counts,
   longest first, each to the least loaded worker that fits the model, does not hold it yet and
   has fewer than K models.
3. Balance: move requests of a replicated model from a busier to a less busy replica while that
   lowers the sum of squared worker times (the makespan never rises, and the loop ends).
The best plan on the path wins. Deterministic: ties go to the lower worker id, then the canonical
model order.
"""
from __future__ import annotations

import math

from mosaic.costs.problem import ModelDemand, StageProblem
from mosaic.schedulers.common import even_counts
from mosaic.schedulers.counts import Counts, makespan, worker_loads


def replica_path(problem: StageProblem, caps: dict[str, int], k: int) -> list[dict[str, int]]:
    """Replica vectors from one replica per model to the most the caps and K*N slots allow, one
    replica more each step, always for the model whose replicas are currently the longest."""
    active = [d for d in problem.models if d.n]
    r = {d.model: 1 for d in active}
    path = [r]
    for _ in range(k * problem.n_workers - len(active)):
        worst = max(active, key=lambda d: d.overhead_s + (d.session_s - d.fixed_s) / r[d.model])
        if r[worst.model] >= caps[worst.model]:
            break
        r = {**r, worst.model: r[worst.model] + 1}
        path.append(r)
    return path


def _place(problem: StageProblem, r: dict[str, int], k: int) -> Counts | None:
    shards: list[tuple[float, int, ModelDemand, int]] = []
    for i, d in enumerate(problem.models):
        if not d.n:
            continue
        for x in even_counts(d.n, list(range(r[d.model]))).values():
            shards.append((d.overhead_s + d.per_request_s * x, i, d, x))
    shards.sort(key=lambda s: (-s[0], s[1]))
    load = [0.0] * problem.n_workers
    held: list[set[str]] = [set() for _ in range(problem.n_workers)]
    counts: Counts = {d.model: {} for d in problem.models}
    for cost, _, d, x in shards:
        room = [w for w in sorted(problem.fits[d.model]) if d.model not in held[w] and len(held[w]) < k]
        if not room:
            return None
        w = min(room, key=lambda w: (load[w], w))
        load[w] += cost
        held[w].add(d.model)
        counts[d.model][w] = x
    return counts


def _balance(problem: StageProblem, counts: Counts, max_moves: int = 10_000) -> Counts:
    loads = worker_loads(problem, counts)
    for _ in range(max_moves):
        moved = False
        for d in problem.models:
            row, tau = counts[d.model], d.per_request_s
            if len(row) < 2 or tau <= 0:
                continue
            hi = max(row, key=lambda w: (loads[w], -w))
            lo = min(row, key=lambda w: (loads[w], w))
            x = min(row[hi] - 1, int((loads[hi] - loads[lo]) / (2 * tau)))
            if x >= 1:
                row[hi] -= x
                row[lo] += x
                loads[hi] -= x * tau
                loads[lo] += x * tau
                moved = True
        if not moved:
            break
    return counts


def greedy_counts(problem: StageProblem, caps: dict[str, int], k: int) -> Counts | None:
    """The best plan along the replica path that honours fits, R_m and K, or None where no vector
    on it can be placed (memory limits on a heterogeneous cluster); the ILP then runs cold."""
    best, best_s = None, math.inf
    for r in replica_path(problem, caps, k):
        counts = _place(problem, r, k)
        if counts is None:
            continue
        counts = _balance(problem, counts)
        span = makespan(problem, counts)
        if span < best_s:
            best, best_s = counts, span
    return best
