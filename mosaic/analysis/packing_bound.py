"""The packing term of the scheduler benchmark's bound: the replicas must also fit on the workers.

Why: the bound's other terms (mosaic/analysis/scheduler_bench.py `lower_bound`) check each model's
replicas and the workers' total busy time, but not that whole sessions pack onto N workers of at
most K models each. Where that binds they are loose: on g01 (4 workers, 12 models, K = 3) every
worker must hold exactly three models, so the busiest model's worker also serves two others,
which the total alone spreads over all four workers (bound 310.8 s; the clairvoyant plan runs
423.8 s; packed, no plan runs under 423.4 s).

For a candidate makespan C every plan that finishes by C satisfies, with y[m, w] = 1 where model m
runs on worker w and x[m, w] its time there, loads included:
  - sum_w y[m, w] >= r_m(C) and sum_w x[m, w] >= l_m sum_w y[m, w] + W_m(C): the least replica
    count and busy time the other terms already prove at slack C - s0 - l_m (S_m, the step floor);
  - x[m, w] >= (l_m + t_m) y[m, w]: a session holds a request, the shortest costs t_m alone;
    some worker holds m's longest request: x[m, w] >= l_m + b_m there;
  - x[m, w] <= (C - s0) y[m, w], y = 0 where m does not fit; sum_m y[m, w] <= K;
  - sum_m x[m, w] + u_min (sum_m y[m, w] - 1) <= C - s0: back to back, an unload between models.
Every quantity only gets harder as C falls, so a C at which HiGHS proves these infeasible bounds
every plan. The search keeps the largest C proven infeasible; a solve that stops at its node limit
without a proof counts as feasible, so the limit can only weaken the term, never break it, and the
work is counted in nodes, not seconds, so the term does not depend on machine load. Workers alike
for every model are interchangeable, so their loads are taken in decreasing order (any plan can be
relabelled so).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import highspy
import numpy as np

# Branch-and-bound nodes per feasibility solve (deterministic work, single thread).
NODE_LIMIT = 1000
# The search: steps of 1%, 2%, 4%, ... above the start until a C is not proven infeasible, then a
# bisection to this relative width.
FIRST_STEP = 0.01
MAX_DOUBLINGS = 7
TOLERANCE = 0.002


@dataclass(frozen=True)
class Need:
    """What one model needs of any plan finishing by a candidate C (from the bound's other terms)."""

    replicas: int          # least distinct workers running it
    work_s: float          # least engine time over all of them, loads excluded
    load_s: float          # l_m
    smallest_s: float      # l_m + t_m: a session of its shortest request alone
    longest_s: float       # l_m + b_m: its longest request alone
    fits: frozenset[int]   # workers it fits on


def packs(needs: Sequence[Need], n_workers: int, k: int, room: float, u_min: float,
          node_limit: int = NODE_LIMIT) -> bool:
    """False only where HiGHS proves that no placement of the needs within `room` seconds per
    worker (start-up excluded) and K models per worker exists."""
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("threads", 1)
    h.setOptionValue("mip_max_nodes", node_limit)
    inf = highspy.kHighsInf
    cols: dict[tuple[int, int], tuple[int, int, int]] = {}

    def var(hi: float, integer: bool) -> int:
        j = h.getNumCol()
        h.addVar(0.0, hi)
        if integer:
            h.changeColIntegrality(j, highspy.HighsVarType.kInteger)
        return j

    def row(lo: float, hi: float, idx: list[int], val: list[float]) -> None:
        h.addRow(lo, hi, len(idx), np.asarray(idx, dtype=np.int32), np.asarray(val, dtype=float))

    for i, nd in enumerate(needs):
        on = [w for w in range(n_workers) if w in nd.fits]
        if len(on) < nd.replicas or nd.longest_s > room:
            return False
        for w in on:
            cols[i, w] = (var(1.0, True), var(room, False), var(1.0, True))   # y, x, z
        ys = [cols[i, w][0] for w in on]
        xs = [cols[i, w][1] for w in on]
        zs = [cols[i, w][2] for w in on]
        row(nd.replicas, inf, ys, [1.0] * len(on))
        row(nd.work_s, inf, xs + ys, [1.0] * len(on) + [-nd.load_s] * len(on))
        row(1.0, 1.0, zs, [1.0] * len(on))
        for w in on:
            y, x, z = cols[i, w]
            row(0.0, inf, [x, y], [1.0, -nd.smallest_s])
            row(-inf, 0.0, [x, y], [1.0, -room])
            row(-inf, 0.0, [z, y], [1.0, -1.0])
            row(0.0, inf, [x, z], [1.0, -nd.longest_s])
    for w in range(n_workers):
        here = [i for i in range(len(needs)) if (i, w) in cols]
        ys = [cols[i, w][0] for i in here]
        xs = [cols[i, w][1] for i in here]
        row(-inf, float(k), ys, [1.0] * len(here))
        row(-inf, room + u_min, xs + ys, [1.0] * len(here) + [u_min] * len(here))
        nxt = w + 1
        if nxt < n_workers and all((w in nd.fits) == (nxt in nd.fits) for nd in needs):
            there = [cols[i, nxt][1] for i in range(len(needs)) if (i, nxt) in cols]
            row(0.0, inf, xs + there, [1.0] * len(xs) + [-1.0] * len(there))
    h.run()
    return h.getModelStatus() != highspy.HighsModelStatus.kInfeasible


def packing_floor(start: float, needs_at: Callable[[float], list[Need] | None], n_workers: int, k: int,
                  s0: float, u_min: float, node_limit: int = NODE_LIMIT) -> float:
    """The largest C found at which no plan packs (`start` where none above it was proven): C must
    be infeasible at `start` already (the other terms' infeasible end). needs_at(C): the models'
    needs at C, None where the other terms already rule C out."""
    def infeasible(c: float) -> bool:
        needs = needs_at(c)
        return needs is None or not packs(needs, n_workers, k, c - s0, u_min, node_limit)

    lo, hi = start, None
    step = FIRST_STEP
    for _ in range(MAX_DOUBLINGS):
        c = start * (1.0 + step)
        if not infeasible(c):
            hi = c
            break
        lo, step = c, 2.0 * step
    if hi is None:
        return lo
    while hi - lo > TOLERANCE * hi:
        mid = 0.5 * (lo + hi)
        if infeasible(mid):
            lo = mid
        else:
            hi = mid
    return lo
