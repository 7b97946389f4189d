"""The packing term of the scheduler benchmark's bound: the replicas must also fit on the workers.

Why: the bound's other terms (benchmarks/scheduler/bench.py `lower_bound`) check each model's
replicas and the workers' total busy time, but not that whole sessions pack onto N workers of at
most K models each. Where every worker must hold K models, the busiest model's worker also serves
K - 1 others, which the total alone spreads over all the workers.

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

Before the branch and bound, each solve fixes y to a greedy placement (`greedy_placement`: models
largest first onto the workers with the most room left, then moves and swaps while a worker is
over the room) and solves what is left, an LP over the times. Where that LP is feasible a packing
exists, which the full search could not have disproven: the same answer, found without branching.
Where it is not, the full search runs. A count of model slots goes first (`slots_short`): a model
too big to share a worker with any other runs alone there, so K - 1 of the K N slots are lost for
each such model; where what is left cannot hold every model's replicas, no packing exists (the
LP relaxation rarely proves that, since it spreads the big model's worker over all of them). Where
M = K N each model is one whole session and each worker holds K of them, a partition that
`groups_short` decides (pairing largest with smallest at K = 2; pigeonhole sums of the largest at
any K).
"""
from __future__ import annotations

import math
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
# Relative slack on comparisons, so rounding can only weaken the term.
EPS = 1e-9


@dataclass(frozen=True)
class Need:
    """What one model needs of any plan finishing by a candidate C (from the bound's other terms)."""

    replicas: int          # least distinct workers running it
    work_s: float          # least engine time over all of them, loads excluded
    load_s: float          # l_m
    smallest_s: float      # l_m + t_m: a session of its shortest request alone
    longest_s: float       # l_m + b_m: its longest request alone
    fits: frozenset[int]   # workers it fits on


def _level_fill(demand: float, used: list[float], lo: float, hi: list[float]) -> list[float] | None:
    """Amounts a_j in [lo, hi_j] adding up to `demand` that level used_j + a_j as far as the caps
    allow (water-filling); None where the caps cannot hold it."""
    if lo > min(hi) or sum(hi) < demand:
        return None
    amounts = lambda level: [min(h, max(lo, level - u)) for u, h in zip(used, hi)]  # noqa: E731
    # The level max(used) + demand already holds it; a finite top where the caps are infinite.
    a, b = min(used), min(max(u + h for u, h in zip(used, hi)), max(used) + demand)
    for _ in range(100):
        mid = 0.5 * (a + b)
        if sum(amounts(mid)) < demand:
            a = mid
        else:
            b = mid
    return amounts(b)


def greedy_placement(needs: Sequence[Need], n_workers: int, k: int, room: float,
                     u_min: float, max_moves: int = 2000) -> list[list[int]] | None:
    """Per need, the workers to run it, or None where fewer workers take some model (it fits
    there, under K models) than its replica count. Models go largest first (fewest fitting workers
    before that), each onto as many workers as its replica count, those with the most room left
    that take it, its time water-filled over them, one of them holding its longest request; over
    the room where it must. Then, while a worker is over the room, time shifts from it to another
    replica of one of its models, or a replica moves to another worker, or swaps with one there,
    where that lowers the total time over the room (at most `max_moves` steps, so the work is
    bounded). What is still over the room, `packs`' LP may yet mend."""
    used = [0.0] * n_workers      # replicas' times plus the unloads between them
    held: list[dict[int, float]] = [{} for _ in range(n_workers)]   # worker -> {need: its time}
    order = sorted(range(len(needs)), key=lambda i: (len(needs[i].fits),
                                                      -(needs[i].replicas * needs[i].load_s + needs[i].work_s), i))
    for i in order:
        nd = needs[i]
        # Adding a model to a worker that already runs one costs an unload between them.
        extra = [u_min if held[w] else 0.0 for w in range(n_workers)]
        cands = sorted((w for w in nd.fits if w < n_workers and len(held[w]) < k),
                       key=lambda w: (used[w] + extra[w], w))
        if len(cands) < nd.replicas:
            return None
        # Just its replica count: more would take slots and loads; over the room, the repair mends.
        on = cands[:max(nd.replicas, 1)]
        base = [used[w] + extra[w] for w in on]
        placed = _fill(nd, on, base, room) or _fill(nd, on, base, math.inf)
        for w, t in placed.items():
            used[w] += extra[w] + t
            held[w][i] = t

    def over(w: int, delta: float) -> float:
        return max(0.0, used[w] + delta - room)

    def takes(w: int, i: int) -> bool:
        return w in needs[i].fits and i not in held[w]

    def shift(worst: int) -> bool:
        """Move time of a model split over `worst` and another worker to that one, where it has
        room: no slot or load changes, so it comes first."""
        for i, t in sorted(held[worst].items()):
            nd = needs[i]
            others = [w for w in range(n_workers) if w != worst and i in held[w]]
            floor = nd.smallest_s if any(held[w][i] >= nd.longest_s for w in others) else nd.longest_s
            for w in sorted(others, key=lambda v: (used[v], v)):
                d = min(used[worst] - room, room - used[w], held[worst][i] - floor)
                if d > 1e-9:
                    held[worst][i] -= d
                    held[w][i] += d
                    used[worst] -= d
                    used[w] += d
                    return True
        return False

    for _ in range(max_moves):
        worst = max(range(n_workers), key=lambda w: (used[w], -w))
        if used[worst] <= room:
            break
        if shift(worst):
            continue
        best, gain = None, 1e-9
        for i, t in held[worst].items():
            out = t + (u_min if len(held[worst]) > 1 else 0.0)
            for w in range(n_workers):
                if w == worst or not takes(w, i):
                    continue
                cost = t + (u_min if held[w] else 0.0)
                if len(held[w]) < k:   # move
                    g = over(worst, 0.0) + over(w, 0.0) - over(worst, -out) - over(w, cost)
                    if g > gain:
                        best, gain = (i, None, w), g
                for j, v in held[w].items():   # swap
                    if j == i or not takes(worst, j):
                        continue
                    g = over(worst, 0.0) + over(w, 0.0) - over(worst, v - t) - over(w, t - v)
                    if g > gain:
                        best, gain = (i, j, w), g
        if best is None:   # the LP may still mend it, moving time between a model's replicas
            break
        i, j, w = best
        t = held[worst].pop(i)
        if j is None:
            used[worst] -= t + (u_min if held[worst] else 0.0)
            used[w] += t + (u_min if held[w] else 0.0)
        else:   # each keeps its count of models, so its unloads
            v = held[w].pop(j)
            held[worst][j] = v
            used[worst] += v - t
            used[w] += t - v
        held[w][i] = t
    return [sorted(w for w in range(n_workers) if i in held[w]) for i in range(len(needs))]


def _fill(nd: Need, on: list[int], base: list[float], room: float) -> dict[int, float] | None:
    """The need's time water-filled over workers `on` already busy `base`, one of them holding its
    longest request, within `room`: worker -> its time, or None where it does not fit."""
    caps = [room - b for b in base]
    demand = len(on) * nd.load_s + nd.work_s
    got = _level_fill(demand, base, nd.smallest_s, caps)
    if got is None:
        return None
    top = max(range(len(on)), key=lambda j: (caps[j], -j))
    if got[top] < nd.longest_s:   # the longest request's worker first, the rest over the others
        if nd.longest_s > caps[top]:
            return None
        rest = [j for j in range(len(on)) if j != top]
        got = [0.0] * len(on)
        got[top] = nd.longest_s
        if rest:
            fill = _level_fill(max(0.0, demand - nd.longest_s), [base[j] for j in rest], nd.smallest_s,
                               [caps[j] for j in rest])
            if fill is None:
                return None
            for j, a in zip(rest, fill):
                got[j] = a
    return dict(zip(on, got))


def slots_short(needs: Sequence[Need], n_workers: int, k: int, room: float, u_min: float) -> bool:
    """True where the workers' K N model slots provably cannot hold every model. A model on q
    workers has a replica of at least max(l + W / q, its longest request alone); where that, an
    unload and the smallest session of any other model overrun the room, that replica's worker
    runs it alone, and its other K - 1 slots are lost (distinct models, distinct workers). So each
    model takes at least min(r + (K - 1) [alone at r], the least q >= r not alone) slots. The
    branch and bound rarely proves this: its LP spreads the big model's worker over all of them."""
    if k <= 1 or len(needs) < 2:
        return False
    smallest = sorted(nd.smallest_s for nd in needs)

    def alone(nd: Need, q: int) -> bool:
        other = smallest[1] if nd.smallest_s == smallest[0] else smallest[0]
        return max(nd.load_s + nd.work_s / q, nd.longest_s) + u_min + other > room * (1 + EPS)

    taken = 0
    for nd in needs:
        q = max(nd.replicas, 1)
        cost = q + (k - 1) if alone(nd, q) else q
        for more in range(q + 1, min(cost, len(nd.fits) + 1)):
            if not alone(nd, more):
                cost = more
                break
        taken += cost
    return taken > k * n_workers


def groups_short(needs: Sequence[Need], n_workers: int, k: int, room: float, u_min: float) -> bool:
    """True where M = K N models provably cannot be grouped. Then every worker holds exactly K
    models and every model one worker (sum_m r_m >= M = K N slots), so each model is one whole
    session of at least a_m = max(l + W, its longest request alone) and the question is a partition
    of the a_m into N groups of K, each within the room after K - 1 unloads. With K = 2, pairing the
    largest with the smallest minimises the largest pair (exact, fit sets aside); with any K, among
    the (j - 1) N + 1 largest some group holds j, so some group is at least the j smallest of those
    plus the K - j smallest of the rest. The branch and bound rarely proves these: its LP spreads
    each model over the workers."""
    if k < 2 or len(needs) != k * n_workers:
        return False
    a = sorted((max(nd.load_s + nd.work_s, nd.longest_s, nd.smallest_s) for nd in needs), reverse=True)
    cap = room - (k - 1) * u_min
    if k == 2 and max(a[i] + a[-1 - i] for i in range(n_workers)) > cap * (1 + EPS):
        return True
    for j in range(1, k + 1):
        top, rest = a[:(j - 1) * n_workers + 1], a[(j - 1) * n_workers + 1:]
        j_top = max(j, k - len(rest))
        if j_top > len(top):
            continue
        if sum(top[-j_top:]) + sum(rest[len(rest) - (k - j_top):]) > cap * (1 + EPS):
            return True
    return False


def packs(needs: Sequence[Need], n_workers: int, k: int, room: float, u_min: float,
          node_limit: int = NODE_LIMIT, shortcuts: bool = True) -> bool:
    """False only where no placement of the needs within `room` seconds per worker (start-up
    excluded) and K models per worker exists: HiGHS proves it, or the slot count (`slots_short`), or
    the partition check (`groups_short`). shortcuts: those two and the greedy placement first
    (False: HiGHS's search alone, as a check of them)."""
    if shortcuts and (slots_short(needs, n_workers, k, room, u_min)
                      or groups_short(needs, n_workers, k, room, u_min)):
        return False
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("threads", 1)
    h.setOptionValue("mip_max_nodes", node_limit)
    inf = highspy.kHighsInf
    cols: dict[tuple[int, int], tuple[int, int, int]] = {}
    order_rows: list[int] = []

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
            order_rows.append(h.getNumRow())
            row(0.0, inf, xs + there, [1.0] * len(xs) + [-1.0] * len(there))
    placed = greedy_placement(needs, n_workers, k, room, u_min) if shortcuts else None
    if placed is not None:
        # y fixed to the greedy's placement leaves an LP over the times; the load order between
        # alike workers is only there to cut the search's symmetry, so it is lifted meanwhile.
        ys = np.asarray([col[0] for col in cols.values()], dtype=np.int32)
        fixed = np.asarray([1.0 if w in placed[i] else 0.0 for (i, w) in cols])
        rows = np.asarray(order_rows, dtype=np.int32)
        h.changeColsBounds(len(ys), ys, fixed, fixed)
        h.changeRowsBounds(len(rows), rows, np.full(len(rows), -inf), np.full(len(rows), inf))
        h.run()
        if h.getModelStatus() == highspy.HighsModelStatus.kOptimal:
            return True
        h.changeColsBounds(len(ys), ys, np.zeros(len(ys)), np.ones(len(ys)))
        h.changeRowsBounds(len(rows), rows, np.zeros(len(rows)), np.full(len(rows), inf))
        h.clearSolver()
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
