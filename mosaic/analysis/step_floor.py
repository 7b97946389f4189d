"""The step floor: a lower bound on any session of a model's requests from the engine's step costs,
which the scheduler benchmark's bound (mosaic/analysis/scheduler_bench.py `lower_bound`) uses to
price replication.

Why: the bound's other terms price a replica of model m at S_m / r_m (one session of all of m's
requests, shared out), which assumes splitting keeps one session's batching. It does not: every
session decodes for as many steps as its longest output, and each step pays a fixed cost
whatever its batch. Measured on synth_mmlu_pro at 16 workers: the 12 LlamaR1 replicas of
176 requests serve for 328-676 s (load excluded) where S_m / 12 is 321 s.

The floor, from the step model (mosaic/profiles/cost_model.py), for any theta in [0, 1]: a decode
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
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from mosaic.profiles import EngineProfile, ModelProfile
from mosaic.profiles.cost_model import CostModel

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
        overhead, per_seq, lin_min, lam, ctx, len2 = CostModel(model, engine).decode_floor()
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
