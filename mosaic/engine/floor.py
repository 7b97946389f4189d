"""Session prices from step costs for requests whose output lengths are known: the step floor, a
lower bound on any session of them (StepFloor), and the price of any group of them (GroupCosts).
The scheduler benchmark's bound and its reference plans use these.

Why a floor: pricing a replica of model m at S_m / r_m (one session of all of m's requests,
shared out) assumes splitting keeps one session's batching. It does not: every session decodes
for as many steps as its longest output, and each step pays a fixed cost whatever its batch.

The floor, from the step model (mosaic/engine/step_cost.py), for any theta in [0, 1]: a decode
step of n sequences costs at least F + sum over its sequences of (c + ctx_eff * context), with
  F = overhead + theta * lin_min,  c = per_seq + (1 - theta) * lam,
since linear(tokens) >= max(lin_min, lam * tokens) >= theta lin_min + (1 - theta) lam tokens and
tokens >= n. Every token after a request's first comes from its own step, so a session A runs at
least o_max(A) - 1 steps and
  T(A) >= warmup + F (o_max(A) - 1) + sum_{r in A} g_r,
  g_r = (o_r - 1) c + ctx_eff ((o_r - 1) p_r + o_r (o_r - 1) / 2),
the decode context of r's j-th step being p_r + j. Other steps (prefills) only add. A preempted
request gets a token from its resume prefill instead of a decode step; with V0's full recompute
that step's linear term alone is >= (1 - theta) lam (p + j), so with
ctx_eff = min(ctx, (1 - theta) lam / 2) each such token still pays its share (p + j >= 2). V1 with
prefix caching may recompute almost nothing, so ctx_eff = 0 there. Sessions of a model on one
worker only add: two sessions pay F for both their longest outputs.

Replicas: a plan splits m's requests over r_m workers, each with at most `slack` seconds for m
(the makespan less start-up and load). Sort m's requests by output, longest first. Every replica
that holds one of the t longest has o_max >= o_(t), so at most cap_t = slack - warmup - F (o_(t) - 1)
of g; they hold g(top t) in all, so at least b_t = ceil(g(top t) / cap_t) replicas hold one of
them (and none, if cap_1 <= 0: the slack is infeasible). Hence r_m >= max_t b_t, and, counting
the replicas whose longest output is at least x for each x, the replicas' steps add up to at least
sum_t max(b_1..b_t) (o_(t) - o_(t+1)) (o_(n+1) = 1), so their busy time is at least
r_m warmup + F * that + g(all); and since every replica takes at most the slack, r_m is also at
least (F * that + g(all)) / (slack - warmup). Each theta gives a valid floor; the largest over a
grid is used.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from mosaic.engine.session import cost_model
from mosaic.engine.step_cost import CostModel
from mosaic.profiles import EngineProfile, ModelProfile, ProfileSet, kv_capacity_tokens

THETAS = tuple(i / 8 for i in range(9))
# Relative slack on divisions, so rounding can only weaken the floor.
EPS = 1e-9


@dataclass(frozen=True)
class StepFloor:
    """One model's requests (prompt, output), outputs longest first, and the floor's coefficients
    per theta: fixed[j] (F, seconds per step) and g[j] (g_r per request, seconds, same order)."""

    outputs: np.ndarray          # o_(1) >= o_(2) >= ...
    warmup_s: float
    fixed: tuple[float, ...]
    g_cum: tuple[np.ndarray, ...]   # cumulative g over the sorted requests, per theta
    min_steps: float = 0.0          # max(sum(o - 1) / max_num_seqs, sum(context) / KV capacity)

    @cached_property   # need() reads it at every candidate makespan of the bound's bisection
    def steps_gap(self) -> np.ndarray:
        """o_(t) - o_(t+1), with o_(n+1) = 1: how many step counts each prefix's replicas cover."""
        return np.append(self.outputs[:-1] - self.outputs[1:], self.outputs[-1] - 1.0)

    @classmethod
    def of(cls, model: ModelProfile, engine: EngineProfile, batch: list[tuple[str, int, int]],
           kv_tokens: int | None = None) -> "StepFloor | None":
        """kv_tokens: the most KV-cache tokens an engine of the model has on any worker (None: no
        KV term). None where the cost model has a negative term (its steps could then cost less than the
        floor's parts; no floor is claimed)."""
        overhead, per_seq, lin_min, lam, ctx, len2 = cost_model(model, engine).decode_floor()
        if min(overhead, per_seq, lam, ctx, len2) < 0 or not batch:
            return None
        order = sorted(batch, key=lambda b: (-b[2], -b[1]))
        p = np.array([b[1] for b in order], dtype=float)
        o = np.array([b[2] for b in order], dtype=float)
        dec = o - 1.0
        ctx_sum = dec * p + o * dec / 2.0
        recompute_free = engine.scheduling == "v1" and engine.prefix_caching
        # A resume's recomputed prompt attends (p + j)^2 >= (p + j)(p + 1): its share where p is long enough.
        resume_pays = (len2 * (p + 1.0) >= ctx) & (not recompute_free)
        fixed, g_cum = [], []
        for theta in THETAS:
            if theta > 0 and not (lin_min >= 0 and math.isfinite(lin_min)):
                continue
            f = overhead + theta * lin_min
            lin = (1.0 - theta) * lam
            ctx_eff = np.where(resume_pays, ctx, 0.0 if recompute_free else min(ctx, lin / 2.0))
            g = (dec * (per_seq + lin) + ctx_eff * ctx_sum) / 1e3
            fixed.append(f / 1e3)
            g_cum.append(np.cumsum(g))
        min_steps = float(dec.sum()) / engine.max_num_seqs
        if kv_tokens:
            min_steps = max(min_steps, float(ctx_sum.sum()) / kv_tokens)
        return cls(o, model.warmup_s, tuple(fixed), tuple(g_cum), min_steps * (1 - EPS))

    def need(self, slack: float) -> tuple[int, float] | None:
        """(least replicas, least busy seconds of them all, loads excluded) for a plan whose
        replicas of this model each take at most `slack` seconds; None: no replica fits."""
        room = slack - self.warmup_s
        if room <= 0:
            return None
        steps_gap = self.steps_gap
        best_r, best_busy = 1, 0.0
        for f, g in zip(self.fixed, self.g_cum):
            cap = room - f * (self.outputs - 1.0)
            if cap[0] <= 0 or g[0] > cap[0] * (1 + EPS):
                return None
            b = np.ceil(g / cap * (1 - EPS))
            b = np.maximum.accumulate(np.maximum(b, 1.0))
            # All the model's steps, wherever they run (the replicas' longest outputs, and one
            # session's throughput limits), fit in r replicas of `room` each.
            steps = max(float(np.dot(b, steps_gap)), self.min_steps)
            spread = f * steps + float(g[-1])
            r = max(int(b[-1]), math.ceil(spread / room * (1 - EPS)))
            busy = r * self.warmup_s + spread
            best_r, best_busy = max(best_r, r), max(best_busy, busy)
        return best_r, best_busy


@dataclass(frozen=True)
class GroupCosts:
    """The price of any group of one model's requests whose output lengths are known (a
    reference plan's groups): the larger of the step floor and the session as the engine would
    batch it, from cumulative sums over the requests longest first, so a group costs O(1) to O(k)."""

    ids: tuple[str, ...]
    outputs: np.ndarray       # o, longest first
    fixed: np.ndarray         # F per theta (seconds per step)
    g_cum: np.ndarray         # theta x (n + 1): cumulative g, 0 first
    dec_cum: np.ndarray       # (n + 1,): cumulative decode tokens, 0 first
    ctx_cum: np.ndarray       # (n + 1,): cumulative decode context tokens, 0 first
    warmup_s: float
    max_seqs: int
    kv_tokens: float
    base: np.ndarray          # (n + 1,): a decode step of k sequences, attention excluded (s)
    ctx_s: float              # per context token a decoding sequence attends to (s)
    p_cum: np.ndarray         # (n + 1,): cumulative prompt tokens, 0 first
    p2_cum: np.ndarray        # (n + 1,): cumulative squared prompt tokens, 0 first
    engine: CostModel         # prices the session's prefill

    @classmethod
    def of(cls, profiles: ProfileSet, model: str, batch: Sequence[tuple[str, int, int]],
           memory_gib: float) -> "GroupCosts | None":
        prof, eng = profiles.model(model), profiles.engine
        floor = StepFloor.of(prof, eng, list(batch))
        if floor is None:
            return None
        order = sorted(batch, key=lambda b: (-b[2], -b[1]))   # StepFloor's order
        p = np.array([b[1] for b in order], dtype=float)
        o = floor.outputs
        dec = o - 1.0
        zero = np.zeros(1)
        cm = cost_model(prof, eng)
        base = np.array([0.0] + [cm.decode_base_s(min(k, eng.max_num_seqs)) for k in range(1, len(o) + 1)])
        return cls(tuple(b[0] for b in order), o, np.array(floor.fixed),
                   np.array([np.concatenate([zero, g]) for g in floor.g_cum]),
                   np.concatenate([zero, np.cumsum(dec)]), np.concatenate([zero, np.cumsum(dec * p + o * dec / 2.0)]),
                   floor.warmup_s, eng.max_num_seqs, float(kv_capacity_tokens(prof, eng, memory_gib)) or math.inf,
                   base, cm.decode_ms_per_ctx_token / 1e3, np.concatenate([zero, np.cumsum(p)]),
                   np.concatenate([zero, np.cumsum(p * p)]), cm)

    @property
    def n(self) -> int:
        return len(self.ids)

    def cost(self, i: int, j: int) -> float:
        """Requests i..j-1 (longest first) as one session."""
        o = self.outputs[i:j]
        profile = float(np.dot(self.base[1:j - i + 1], o - np.append(o[1:], 1.0)))
        return self.price(self.g_cum[:, j] - self.g_cum[:, i], *(float(c[j] - c[i]) for c in
                          (self.dec_cum, self.ctx_cum, self.p_cum, self.p2_cum)), j - i, float(o[0]), profile)

    def cost_of(self, idx: Sequence[int]) -> float:
        """The requests idx (ascending: longest first) as one session."""
        ix = np.asarray(idx)
        o = self.outputs[ix]
        profile = float(np.dot(self.base[1:len(ix) + 1], o - np.append(o[1:], 1.0)))
        return self.price((self.g_cum[:, ix + 1] - self.g_cum[:, ix]).sum(axis=1),
                          *(float(np.sum(c[ix + 1] - c[ix])) for c in (self.dec_cum, self.ctx_cum, self.p_cum,
                                                                       self.p2_cum)), len(ix), float(o[0]), profile)

    def price(self, g: np.ndarray, dec: float, ctx: float, p: float, p2: float, n: int, longest: float,
              profile: float) -> float:
        """A session from its sums: the larger of the step floor, whose steps count a too-small KV
        cache, and the session as the engine would run it were all its n requests admitted at once
        (k sequences decode for o_(k) - o_(k+1) steps, longest first: `profile`, sum of base[k]
        times those steps; one prefill of all) or, if the engine runs fewer at once
        (max_num_seqs, or the KV cache at their mean context), all their tokens at that batch."""
        floor = float(np.max(self.fixed * max(longest - 1.0, dec / self.max_seqs, ctx / self.kv_tokens) + g))
        cap = int(min(self.max_seqs, n, max(1.0, self.kv_tokens * n / (p + dec / 2.0 + n))))
        decode = max(profile, self.base[cap] * dec / cap)
        run = decode + self.ctx_s * ctx + self.engine.prefill_s(int(p), p2, n)
        return self.warmup_s + max(floor, run)
