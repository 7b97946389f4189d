"""A clairvoyant reference plan for the scheduler benchmark: made with every request's true output
length, which no policy has, so its simulated makespan is an upper bound on the best plan's and,
with the benchmark's lower bound, brackets it: LB <= optimum <= clairvoyant. Where a policy sits
far above the bound but near this plan, the gap is what the lengths are worth, not the search;
where this plan too sits far above the bound, the bound is loose there (or this heuristic weak).

Not a policy (schedulers never see lengths) and not optimal; a heuristic:
1. A group of a model's requests is priced by the larger of the step floor
   (mosaic/engine/floor.py, its steps also counting a too-small KV cache) and the session as
   the engine would run it with every request admitted at once, or at the batch its KV cache allows.
2. For r replicas, the cheaper (by its largest group) of two splits of the model's requests sorted
   longest first: contiguous groups of equal cost, which keeps the long requests together in few
   small groups and leaves the rest short sessions; and longest first to the cheapest group.
3. Groups plus loads packed longest first onto the least loaded worker that fits the model, does
   not hold it yet and holds fewer than K models; replica counts raised by 1, 2 or 4 for whichever
   model lowers the packed makespan most, until none does; then makespan targets scanned, each
   model at the least replica count whose groups fit the target.
4. The chosen groups priced again by the engine model itself (mosaic.engine.run_session) and packed
   again, since the estimate leaves out preemptions; then moves and swaps of groups relieve the
   busiest worker while they shorten it (`improve`: longest first leaves such moves where workers
   hold several models).
Deterministic: ties go to the earlier model (sorted names), the lower worker id.
"""
from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence

import numpy as np

from mosaic.cluster import Cluster
from mosaic.costs.predict import fitting_workers
from mosaic.plan import Plan, Session, WorkerPlan
from mosaic.engine import GroupCosts, run_session
from mosaic.profiles import ProfileSet, load_time_s

POLICY = "clairvoyant"
STEPS = (1, 2, 4)            # replica-count increments tried per model and round
BISECTIONS = 40              # of the contiguous split's cost threshold
TARGETS = 40                 # makespan targets tried after the climb
MAX_MOVES = 2000             # of the final packing's moves and swaps (`improve`)


def contiguous(mc: GroupCosts, r: int) -> list[list[int]]:
    """At most r contiguous groups of the longest-first order whose largest cost is least (the
    threshold bisected; each group extended while it stays under it)."""
    n = mc.n

    def cut(limit: float) -> list[list[int]] | None:
        out, i = [], 0
        while i < n:
            if len(out) == r or mc.cost(i, i + 1) > limit:
                return None
            # A group's cost grows as it takes more: the last end that keeps it under the limit.
            end = i + bisect.bisect_right(range(i + 1, n + 1), limit, key=lambda j: mc.cost(i, j))
            out.append(list(range(i, end)))
            i = end
        return out

    lo, hi = 0.0, mc.cost(0, n)
    for _ in range(BISECTIONS):
        mid = 0.5 * (lo + hi)
        if cut(mid) is None:
            lo = mid
        else:
            hi = mid
    return cut(hi) or [list(range(n))]


def spread(mc: GroupCosts, r: int, sizes: Sequence[int] | None = None) -> list[list[int]]:
    """The r longest open r groups; every other request, longest first, to the cheapest group
    (each group's sums kept as it grows: a request shorter than all before it adds its own terms
    and (base[n + 1] - base[n]) (o - 1) to the profile). sizes: the number of requests each group
    takes (summing to n, each >= 1), for a plan whose replica sizes are fixed; None: any."""
    r = min(r, mc.n)
    room = list(sizes) if sizes is not None else [mc.n] * r
    cols = [np.diff(c) for c in (mc.dec_cum, mc.ctx_cum, mc.p_cum, mc.p2_cum)]
    g_one = np.diff(mc.g_cum, axis=1)
    groups = [[i] for i in range(r)]
    sums = [[g_one[:, i].copy(), *(float(c[i]) for c in cols), 1, float(mc.outputs[i]),
             float(mc.base[1] * (mc.outputs[i] - 1.0))] for i in range(r)]
    costs = [mc.price(*sm) for sm in sums]
    for i in range(r, mc.n):
        k = min((j for j in range(r) if len(groups[j]) < room[j]), key=lambda j: (costs[j], j))
        sm = sums[k]
        sm[0] = sm[0] + g_one[:, i]
        for j, c in enumerate(cols):
            sm[1 + j] += float(c[i])
        sm[7] += float((mc.base[sm[5] + 1] - mc.base[sm[5]]) * (mc.outputs[i] - 1.0))
        sm[5] += 1
        groups[k].append(i)
        costs[k] = mc.price(*sm)
    return groups


def split(mc: GroupCosts, r: int) -> list[tuple[list[str], float]]:
    """(request ids, cost) per group: the split of the two whose largest group costs less."""
    best = None
    for groups in (contiguous(mc, r), spread(mc, r)):
        priced = [([mc.ids[i] for i in g], mc.cost_of(g)) for g in groups if g]
        if best is None or max(c for _, c in priced) < max(c for _, c in best):
            best = priced
    return best


def pack(groups: Mapping[str, list[tuple[list[str], float]]], loads: Mapping[str, float],
         unloads: Mapping[str, float], fits: Mapping[str, frozenset[int]], n_workers: int,
         k: int | None, startup_s: float) -> tuple[float, list[list[tuple[str, list[str]]]]] | None:
    """Groups (plus their model's load) longest first, each to the least loaded worker that fits
    the model, does not hold it and holds fewer than K models. None: a group found no worker."""
    t = [startup_s] * n_workers
    held: list[list[tuple[str, list[str]]]] = [[] for _ in range(n_workers)]
    items = sorted(((c + loads[m], m, ids) for m in sorted(groups) for ids, c in groups[m]),
                   key=lambda x: (-x[0], x[1]))
    for c, m, ids in items:
        best = None
        for w in range(n_workers):
            models = [s[0] for s in held[w]]
            if w not in fits[m] or m in models or (k is not None and len(models) >= k):
                continue
            end = t[w] + c + (unloads[models[-1]] if models else 0.0)
            if best is None or end < best[0]:
                best = (end, w)
        if best is None:
            return None
        t[best[1]] = best[0]
        held[best[1]].append((m, ids))
    return max(t), held


def improve(held: list[list[tuple[str, list[str]]]], cost: Mapping[str, Mapping[tuple[str, ...], float]],
            loads: Mapping[str, float], unloads: Mapping[str, float], fits: Mapping[str, frozenset[int]],
            k: int | None, startup_s: float, max_moves: int = MAX_MOVES
            ) -> tuple[float, list[list[tuple[str, list[str]]]]]:
    """The packing's busiest worker relieved while a move of one of its groups to another worker,
    or a swap with a group there, lowers the larger of the two workers' times (K, fits and one
    session per model and worker kept). Longest-first packing leaves such moves where every worker
    holds K models (M = K N: on g09 of the benchmark it packed 1.05x the bound, a partition exists at
    1.01x). At most `max_moves` steps; ties to the lower worker, then the earlier group."""
    held = [list(h) for h in held]

    def time_of(sessions: list[tuple[str, list[str]]]) -> float:
        if not sessions:
            return startup_s
        # As `pack` times it: an unload between consecutive sessions, none after the last.
        return (startup_s + sum(loads[m] + cost[m][tuple(ids)] for m, ids in sessions)
                + sum(unloads[m] for m, _ in sessions[:-1]))

    def ok(w: int, sessions: list[tuple[str, list[str]]]) -> bool:
        models = [m for m, _ in sessions]
        return (all(w in fits[m] for m in models) and len(set(models)) == len(models)
                and (k is None or len(models) <= k))

    t = [time_of(h) for h in held]
    for _ in range(max_moves):
        worst = max(range(len(held)), key=lambda w: (t[w], -w))
        best = None
        for w in range(len(held)):
            if w == worst:
                continue
            for i, g in enumerate(held[worst]):
                options = [(None, held[worst][:i] + held[worst][i + 1:], held[w] + [g])]
                options += [(j, held[worst][:i] + held[worst][i + 1:] + [h], held[w][:j] + held[w][j + 1:] + [g])
                            for j, h in enumerate(held[w])]
                for j, a, b in options:
                    if not (ok(worst, a) and ok(w, b)):
                        continue
                    ta, tb = time_of(a), time_of(b)
                    if max(ta, tb) < t[worst] - 1e-9 and (best is None or max(ta, tb) < best[0] - 1e-9):
                        best = (max(ta, tb), w, a, b, ta, tb)
        if best is None:
            break
        _, w, a, b, ta, tb = best
        held[worst], held[w], t[worst], t[w] = a, b, ta, tb
    return max(t), held


def clairvoyant_plan(batches: Mapping[str, Sequence[tuple[str, int, int]]], profiles: ProfileSet,
                     cluster: Cluster, k: int | None) -> Plan | None:
    """batches: per model, (request id, prompt tokens, true output tokens as the simulator runs
    them). None where no packing within K and memory was found, or a model has no floor."""
    eng = profiles.engine
    models = sorted(batches)
    fits = {m: fitting_workers(profiles.model(m), eng, cluster) for m in models}
    if any(not fits[m] for m in models):
        return None
    mem = {m: max(w.memory_gib for w in cluster.workers if w.id in fits[m]) for m in models}
    costs = {m: GroupCosts.of(profiles, m, batches[m], mem[m]) for m in models}
    if any(c is None for c in costs.values()):
        return None
    loads = {m: load_time_s(profiles.model(m), eng) for m in models}
    unloads = {m: profiles.model(m).unload_time_s for m in models}
    cap = {m: min(len(fits[m]), costs[m].n) for m in models}
    cache: dict[tuple[str, int], list[tuple[list[str], float]]] = {}

    def groups(m: str, x: int) -> list[tuple[list[str], float]]:
        if (m, x) not in cache:
            cache[(m, x)] = split(costs[m], x)
        return cache[(m, x)]

    def packed(r: dict[str, int]):
        return pack({m: groups(m, r[m]) for m in models}, loads, unloads, fits, len(cluster.workers), k,
                    eng.worker_startup_s)

    r = {m: 1 for m in models}
    cur = packed(r)
    if cur is None:
        return None
    while True:
        best = None
        for m in models:
            for step in STEPS:
                if r[m] + step > cap[m]:
                    break
                got = packed({**r, m: r[m] + step})
                if got is not None and got[0] < cur[0] - 1e-9 and (best is None or got[0] < best[0][0]):
                    best = (got, {**r, m: r[m] + step})
        if best is None:
            break
        cur, r = best
    # The climb stalls where several models share the busiest worker's level; also try, for
    # makespan targets between the longest single group and the climb's result, each model's
    # least replica count whose groups fit the target, packed.
    start = eng.worker_startup_s
    lo = start + max(loads[m] + costs[m].cost(0, 1) for m in models)
    for target in np.geomspace(lo, max(cur[0], lo * (1 + 1e-9)), TARGETS):
        rt = {}
        for m in models:
            room = target - start - loads[m]
            rt[m] = next((x for x in range(1, cap[m] + 1) if max(c for _, c in groups(m, x)) <= room), None)
            if rt[m] is None:
                break
        else:
            got = packed(rt)
            if got is not None and got[0] < cur[0] - 1e-9:
                cur, r = got, rt
    # The estimate sees preemptions and chunked prefills only roughly: price the chosen groups by
    # the engine model itself and pack them again.
    batch_of = {m: {b[0]: b for b in batches[m]} for m in models}
    timed = {m: [(ids, run_session(profiles.model(m), eng, mem[m], [batch_of[m][i] for i in ids]))
                 for ids, _ in groups(m, r[m])] for m in models}
    cur = pack(timed, loads, unloads, fits, len(cluster.workers), k, start) or cur
    cur = improve(cur[1], {m: {tuple(ids): c for ids, c in timed[m]} for m in models}, loads, unloads, fits, k,
                  start)
    return Plan("expert", POLICY, tuple(
        WorkerPlan(w, tuple(Session(m, tuple(ids)) for m, ids in cur[1][w])) for w in range(len(cluster.workers))))
