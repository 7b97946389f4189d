"""engine_aware: placement and assignment planned on the engine model's session curves.

A replica of model m serving x requests costs l_m + T_m(x), where T_m is the session curve
(mosaic/costs/session_curve.py): the engine model's mean time for sessions of x of the model's
requests, so it carries the batching economy of small shards and the KV-limited throughput of large
ones; the curve also carries that time's spread and the shape of its distribution. The paper's ILP prices a replica at l_m + T_m x / N_m instead, which
promises too much from replication (its plans run up to 2x their prediction).

Search, all of it bounded by counts of work (scheduler.search_limit), never by the clock:
1. Replica counts: from one replica per model, give one more replica to the model whose (even)
   replicas are the longest among those it would still shorten, while the K x N worker slots,
   memory fits and scheduler.replication_cap allow. Every vector on that path is a candidate.
2. Placement of each candidate: replicas longest first, each to the least loaded worker that fits
   the model, does not hold it yet and holds fewer than K models.
3. Local search from the best few placements and from every baseline plan that honours K and
   memory (round robin, least loaded, data parallel, the ILP's greedy warm start): move a replica
   off the busiest worker, swap it with one elsewhere, or shift requests between two replicas of a
   model (each replica keeping within 50% of the model's even share), or split a replica onto a
   worker with a free model slot, whenever that lowers the busiest worker's mean without raising
   another to its level.
4. Every start, before and after its search, is scored by the plan's prediction (the expected
   busiest worker over seeded scenarios of the replicas' random times: mosaic/costs/problem.py
   predict_makespan); the least wins. A baseline's plan is a start, so
   the result is never predicted worse than any of them.
5. Requests to replicas: where the calibration split gives per-question length signals (its
   category means, `ModelDemand.length_hints`), longest predicted first to the replica with the
   most predicted tokens left to take; otherwise an interleaved share of the stream.

Canonical: workers are tried in id order, models in the problem's canonical order, replicas in
list order; ties go to the lower worker id, then the earlier model, then the earlier start. Every
float is summed in that fixed order, so the same problem gives the same plan anywhere.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

from mosaic.config.schema import SchedulerConfig
from mosaic.core.errors import ConfigError
from mosaic.costs.problem import ModelDemand, StageProblem, predict_makespan
from mosaic.plan import Plan, SolverInfo
from mosaic.schedulers.common import even_counts, make_plan, split_counts
from mosaic.schedulers.registry import register, get_scheduler

# How many of the best candidate placements (step 2) the local search starts from.
STARTS = 3
# A replica's share of its model's requests stays within this fraction of the even share.
SHARE_SPREAD = 0.5


@dataclass
class State:
    """replicas[m] = {worker: requests}; loads[w] = predicted seconds of worker w."""

    problem: StageProblem
    k: int
    replicas: list[dict[int, int]]
    loads: list[float]
    held: list[int]      # models per worker

    @classmethod
    def of(cls, problem: StageProblem, k: int, replicas: list[dict[int, int]]) -> "State":
        loads = [0.0] * problem.n_workers
        held = [0] * problem.n_workers
        for d, row in zip(problem.models, replicas):
            for w, x in row.items():
                loads[w] += d.replica_s(x)
                held[w] += 1
        return cls(problem, k, [dict(r) for r in replicas], loads, held)

    @property
    def makespan(self) -> float:
        return max(self.loads, default=0.0)

    def key(self) -> tuple:
        """Lexicographic objective: the makespan, then the sorted load vector (fewer busy workers)."""
        return tuple(sorted(self.loads, reverse=True))


def _caps(problem: StageProblem, params: SchedulerConfig) -> list[int]:
    caps = []
    for d in problem.models:
        cap = len(problem.fits[d.model])
        if params.replication_cap is not None:
            cap = min(cap, params.replication_cap)
        caps.append(max(1, min(cap, problem.n_workers, max(1, d.n))))
    return caps


def _even_time(d: ModelDemand, r: int) -> float:
    return d.replica_s(-(-d.n // r)) if d.n else 0.0


def replica_path(problem: StageProblem, caps: list[int], k: int) -> list[list[int]]:
    """Replica vectors from one replica per model: each step gives one more replica to the model
    whose even replicas are the longest among those another replica would still shorten (a model
    bound by its longest request stops growing; the others go on)."""
    active = [i for i, d in enumerate(problem.models) if d.n]
    r = [1 if d.n else 0 for d in problem.models]
    path = [list(r)]
    slots = k * problem.n_workers - len(active)
    done: set[int] = set()
    while slots > 0:
        open_ = [i for i in active if i not in done]
        if not open_:
            break
        i = max(open_, key=lambda i: (_even_time(problem.models[i], r[i]), -i))
        d = problem.models[i]
        if r[i] >= caps[i] or _even_time(d, r[i] + 1) >= _even_time(d, r[i]):
            done.add(i)
            continue
        r[i] += 1
        slots -= 1
        path.append(list(r))
    return path


def place(problem: StageProblem, r: list[int], k: int) -> State | None:
    shards = []
    for i, d in enumerate(problem.models):
        if not d.n:
            continue
        for j, x in enumerate(even_counts(d.n, list(range(r[i]))).values()):
            shards.append((d.replica_s(x), i, j, x))
    shards.sort(key=lambda s: (-s[0], s[1], s[2]))
    loads = [0.0] * problem.n_workers
    held: list[set[int]] = [set() for _ in range(problem.n_workers)]
    replicas: list[dict[int, int]] = [{} for _ in problem.models]
    for cost, i, _, x in shards:
        room = [w for w in sorted(problem.fits[problem.models[i].model]) if i not in held[w] and len(held[w]) < k]
        if not room:
            return None
        w = min(room, key=lambda w: (loads[w], w))
        loads[w] += cost
        held[w].add(i)
        replicas[i][w] = x
    return State.of(problem, k, replicas)


def _improve(s: State, limit: int, caps: list[int]) -> int:
    """Local search in place; returns the moves made. caps: most replicas a split may grow each
    model to (a start that already has more keeps them, but does not split further)."""
    p = s.problem
    ds = p.models
    n = p.n_workers
    moves = 0
    while moves < limit:
        top = max(range(n), key=lambda w: (s.loads[w], -w))
        peak = s.loads[top]
        best = None   # (new worse of the two workers, kind, args)
        for i, d in enumerate(ds):
            row = s.replicas[i]
            if top not in row:
                continue
            x = row[top]
            c = d.replica_s(x)
            fits = p.fits[d.model]
            for w in range(n):
                if w == top or w not in fits:
                    continue
                if w in row:
                    # Shift m requests from the top's replica to w's: a(m) falls and b(m) rises
                    # with m, so the best m is at their crossing (binary search).
                    y = row[w]

                    def ab(m, d=d, x=x, y=y, c=c, w=w):
                        return (s.loads[top] - c + d.replica_s(x - m),
                                s.loads[w] - d.replica_s(y) + d.replica_s(y + m))

                    # Shares stay within SHARE_SPREAD of the even share: far from it the curve's
                    # errors (a calibration mean off by 10-20%) decide the plan.
                    even = d.n / len(row)
                    lo = 1
                    hi = min(x - 1, int(math.floor(even * (1 + SHARE_SPREAD))) - y,
                             x - int(math.ceil(even * (1 - SHARE_SPREAD))))
                    if hi < lo:
                        continue
                    while lo < hi:
                        mid = (lo + hi + 1) // 2
                        a, b = ab(mid)
                        if b < a:
                            lo = mid
                        else:
                            hi = mid - 1
                    for m in (lo, lo + 1):
                        if 1 <= m <= hi:
                            worse = max(ab(m))
                            if worse < peak and (best is None or worse < best[0]):
                                best = (worse, "shift", (i, w, m))
                    continue
                if s.held[w] < s.k:
                    new = s.loads[w] + c
                    if new < peak and (best is None or max(new, peak - c) < best[0]):
                        best = (max(new, peak - c), "move", (i, w))
                    # Split: m of the top's requests of this model to a new replica on w.
                    if x >= 2 and len(row) < caps[i]:
                        lo, hi = 1, x - 1
                        while lo < hi:
                            mid = (lo + hi + 1) // 2
                            a = s.loads[top] - c + d.replica_s(x - mid)
                            b = s.loads[w] + d.replica_s(mid)
                            if b < a:
                                lo = mid
                            else:
                                hi = mid - 1
                        for m in (lo, lo + 1):
                            if 1 <= m <= x - 1:
                                worse = max(s.loads[top] - c + d.replica_s(x - m), s.loads[w] + d.replica_s(m))
                                if worse < peak and (best is None or worse < best[0]):
                                    best = (worse, "split", (i, w, m))
                # Swap with a replica on w of a model the top does not hold.
                for i2, d2 in enumerate(ds):
                    row2 = s.replicas[i2]
                    if w not in row2 or top in row2 or i2 == i or top not in p.fits[d2.model]:
                        continue
                    c2 = d2.replica_s(row2[w])
                    a, b = peak - c + c2, s.loads[w] - c2 + c
                    if max(a, b) < peak and (best is None or max(a, b) < best[0]):
                        best = (max(a, b), "swap", (i, w, i2))
        if best is None:
            return moves
        _, kind, args = best
        if kind == "move":
            i, w = args
            x = s.replicas[i].pop(top)
            s.replicas[i][w] = x
            c = ds[i].replica_s(x)
            s.loads[top] -= c
            s.loads[w] += c
            s.held[top] -= 1
            s.held[w] += 1
        elif kind == "swap":
            i, w, i2 = args
            x, x2 = s.replicas[i].pop(top), s.replicas[i2].pop(w)
            s.replicas[i][w], s.replicas[i2][top] = x, x2
            c, c2 = ds[i].replica_s(x), ds[i2].replica_s(x2)
            s.loads[top] += c2 - c
            s.loads[w] += c - c2
        elif kind == "split":
            i, w, m = args
            d, row = ds[i], s.replicas[i]
            s.loads[top] += d.replica_s(row[top] - m) - d.replica_s(row[top])
            s.loads[w] += d.replica_s(m)
            row[top] -= m
            row[w] = m
            s.held[w] += 1
        else:
            i, w, m = args
            d, row = ds[i], s.replicas[i]
            s.loads[top] += d.replica_s(row[top] - m) - d.replica_s(row[top])
            s.loads[w] += d.replica_s(row[w] + m) - d.replica_s(row[w])
            row[top] -= m
            row[w] += m
        moves += 1
    return moves


def _from_plan(problem: StageProblem, plan: Plan, k: int) -> State | None:
    """A baseline's plan as a search state, if it honours K and memory (one session per model
    per worker)."""
    index = {d.model: i for i, d in enumerate(problem.models)}
    replicas: list[dict[int, int]] = [{} for _ in problem.models]
    for wp in plan.workers:
        if len(wp.sessions) > k:
            return None
        for sess in wp.sessions:
            i = index[sess.model]
            if wp.worker in replicas[i] or wp.worker not in problem.fits[sess.model]:
                return None
            replicas[i][wp.worker] = len(sess.request_ids)
    return State.of(problem, k, replicas)


def deal(d: ModelDemand, counts: dict[int, int]) -> dict[int, tuple[str, ...]]:
    """Which of d's requests each replica serves. With length hints: longest predicted first, each
    to the replica with the most predicted tokens still to take (its share of the model's total),
    so long requests spread over the replicas instead of meeting in one; each replica keeps stream
    order. Without hints: an interleaved share of the stream (schedulers.common.split_counts)."""
    if d.length_hints is None or len(counts) < 2:
        return split_counts(d.request_ids, counts)
    hints = d.length_hints
    total = sum(hints)
    budget = {w: total * x / d.n for w, x in counts.items()}
    left = dict(counts)
    picked: dict[int, list[int]] = {w: [] for w in counts}
    for i in sorted(range(d.n), key=lambda i: (-hints[i], i)):
        w = max((w for w in left if left[w] > 0), key=lambda w: (budget[w], -w))
        picked[w].append(i)
        budget[w] -= hints[i]
        left[w] -= 1
    return {w: tuple(d.request_ids[i] for i in sorted(idx)) for w, idx in picked.items()}


def baselines(problem: StageProblem, params: SchedulerConfig, k: int) -> list[tuple[str, State]]:
    out = []
    for name in ("round_robin", "least_loaded", "data_parallel"):
        try:
            plan = get_scheduler(name)(problem, params)
        except ConfigError:
            continue
        st = _from_plan(problem, plan, k)
        if st is not None:
            out.append((name, st))
    from mosaic.schedulers.greedy import greedy_counts
    from mosaic.schedulers.ilp import replication_caps

    counts = greedy_counts(problem, replication_caps(problem, params), k)
    if counts is not None:
        out.append(("greedy", State.of(problem, k, [
            {w: x for w, x in counts.get(d.model, {}).items() if x > 0} for d in problem.models])))
    return out


def lower_bound(problem: StageProblem, k: int) -> float:
    """No plan is predicted below this: all work spread evenly, each model loaded at least once and
    its requests costing at least one session of all of them (T is subadditive); each model's
    smallest replica; and with K < models, a worker holding ceil(M / N) models pays their loads."""
    active = [d for d in problem.models if d.n]
    if not active:
        return 0.0
    spread = sum(d.replica_s(d.n) for d in active) / problem.n_workers
    single = max(d.replica_s(1) for d in active)
    per_worker = math.ceil(len(active) / problem.n_workers)
    smallest = sorted(d.replica_s(1) for d in active)[:per_worker]
    return max(spread, single, sum(smallest))


def predicted_makespan(problem: StageProblem, s: State) -> float:
    """The prediction make_plan gives the state's plan (mosaic/costs/problem.py predict_makespan)."""
    workers: list[list] = [[] for _ in range(problem.n_workers)]
    for d, row in zip(problem.models, s.replicas):
        for w, x in row.items():
            workers[w].append((d, x))
    means, _, expected = predict_makespan(workers)
    return max(means, default=0.0) if expected is None else expected


@register("engine_aware", reads=("max_models_per_worker", "replication_cap", "search_limit"),
          needs=("session_curves",))
def engine_aware(problem: StageProblem, params: SchedulerConfig) -> Plan:
    t0 = time.perf_counter()
    n_models = sum(1 for d in problem.models if d.n)
    k = params.max_models_per_worker or max(1, len(problem.models))
    if k * problem.n_workers < n_models:
        raise ConfigError(f"engine_aware infeasible: K*N = {k}*{problem.n_workers} = {k * problem.n_workers} "
                          f"worker slots for {n_models} models; raise scheduler.max_models_per_worker or "
                          "cluster.n_workers")
    caps = _caps(problem, params)
    candidates = [s for r in replica_path(problem, caps, k) if (s := place(problem, r, k)) is not None]
    candidates.sort(key=lambda s: s.key())
    starts = [("path", s) for s in candidates[:STARTS]] + baselines(problem, params, k)
    if not starts:
        raise ConfigError("engine_aware: no placement honours K and the memory limits; raise "
                          "scheduler.max_models_per_worker or cluster.memory_gib")
    budget = params.search_limit
    # The search balances the workers' mean times; the plan's prediction also prices their random
    # spread (predict_makespan). So every start as it came (a baseline's plan among
    # them) and as the search left it is scored by that prediction, and the least wins, ties to
    # the earlier: the result is never predicted worse than any start.
    finals = []
    for name, s in starts:
        finals.append((name, State.of(problem, k, s.replicas)))
        budget -= _improve(s, max(0, budget // max(1, len(starts))), caps)
        finals.append((name, State.of(problem, k, s.replicas)))
    scored = [(predicted_makespan(problem, s), s.key(), j) for j, (_, s) in enumerate(finals)]
    best_from, best = finals[min(scored)[2]]
    assignment: dict[int, list] = {}
    for d, row in zip(problem.models, best.replicas):
        for w, ids in deal(d, {w: x for w, x in sorted(row.items()) if x > 0}).items():
            assignment.setdefault(w, []).append((d.model, ids))
    # Predicted on the mean curves: each worker's mean and spread, the makespan their expected
    # largest; the bound on the means is below it (the expected largest is at least every mean).
    plan = make_plan(problem, "engine_aware", assignment, None, {"K": k})
    objective = plan.predicted_makespan_s
    bound = min(objective, lower_bound(problem, k))
    info = SolverInfo("heuristic", time.perf_counter() - t0, objective, bound,
                      (objective - bound) / objective if objective > 0 else 0.0, best_from)
    return replace(plan, solver=info)

