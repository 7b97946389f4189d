"""Step costs: the per-iteration latency of one (model, engine) pair, the one formula the
simulator's engines, the planner's session estimates and the bounds all price steps with."""
from __future__ import annotations

import math

import numpy as np

from mosaic.profiles.engine import EngineProfile
from mosaic.profiles.models import ModelProfile


class CostModel:
    """Step latency for one (model, engine) pair; precomputes the coefficients once. tp > 1: one
    engine over tp GPUs, faster by the engine's TP scaling (TensorParallelProfile)."""

    def __init__(self, model: ModelProfile, engine: EngineProfile, tp: int = 1):
        k = model.kernels   # its own kernels timed on the device, in place of the derived terms
        pts = np.array(engine.linear_ms_by_tokens if k is None else k.linear_ms_by_tokens, dtype=float)
        self._lin_x, self._lin_y = pts[:, 0], pts[:, 1]
        self._lin_tail_slope = (pts[-1, 1] - pts[-2, 1]) / (pts[-1, 0] - pts[-2, 0])
        self._lin_scale = model.params_b / engine.linear_reference_params_b if k is None else 1.0
        self._lin_cache: dict[float, float] = {}
        self._base_cache: dict[int, float] = {}
        self._overhead_ms = engine.step_overhead_ms
        self._per_seq_ms = engine.per_seq_overhead_ms
        bw = engine.hbm_bandwidth_gbs * 1e9 * engine.bandwidth_efficiency
        self.decode_ms_per_ctx_token = model.kv_bytes_per_token / bw * 1e3
        # Causal attention: QK^T and AV are 2*L^2*d flops each per layer, halved by the mask.
        flops = engine.peak_tflops * 1e12 * engine.flops_efficiency
        self.prefill_ms_per_len2 = 2.0 * model.n_layers * model.hidden_size / flops * 1e3
        if k is not None:
            self.decode_ms_per_ctx_token, self.prefill_ms_per_len2 = k.ctx_ms, k.len2_ms
        if model.cost:  # a measured fit replaces every hardware-derived coefficient
            c = model.cost
            self._lin_x, self._lin_y = np.array([0.0, 1.0]), np.array([0.0, c["token_ms"]])
            self._lin_tail_slope, self._lin_scale = c["token_ms"], 1.0
            self._overhead_ms, self._per_seq_ms = c["step_ms"], c.get("seq_ms", 0.0)
            self.decode_ms_per_ctx_token, self.prefill_ms_per_len2 = c["ctx_ms"], c["len2_ms"]
        if tp > 1:  # fixed costs by the step speed-up, per-token work by the token speed-up
            tpp = model.tp(engine, tp)
            f, f_work = 1.0 / tpp.speedup(tp), 1.0 / tpp.work_speedup(tp)
            self._lin_scale *= f_work
            self._overhead_ms *= f
            self._per_seq_ms *= f
            f_attn = 1.0 / tp if tpp.attention == "heads" else f_work
            self.decode_ms_per_ctx_token *= f_attn
            self.prefill_ms_per_len2 *= f_attn

    def linear_ms(self, tokens: float) -> float:
        # Memoised: the engine asks for the same few batch sizes thousands of times per session
        # (session curves run thousands of sessions), and np.interp on a scalar is most of a step.
        cache = self._lin_cache
        hit = cache.get(tokens)
        if hit is not None:
            return hit
        if tokens <= self._lin_x[-1]:
            base = float(np.interp(tokens, self._lin_x, self._lin_y))
        else:
            base = self._lin_y[-1] + self._lin_tail_slope * (tokens - self._lin_x[-1])
        cache[tokens] = out = base * self._lin_scale
        return out

    def decode_floor(self) -> tuple[float, float, float, float, float, float]:
        """Floors of a step's cost terms, in ms, for lower bounds (mosaic/engine/floor.py):
        (fixed per step, per sequence in the step, least linear(n) over n >= 1, least linear(n) / n
        over n >= 1, per context token a decoding sequence attends to, per squared prefill length).
        The linear table is piecewise linear, so both least values lie at n = 1, a breakpoint, or
        the tail's limit."""
        xs = [1.0] + [float(x) for x in self._lin_x if x > 1.0]
        vals = [self.linear_ms(x) for x in xs]
        tail = self._lin_tail_slope * self._lin_scale
        lin_min = min(vals) if tail >= 0 else -math.inf
        per_token = min([v / x for v, x in zip(vals, xs)] + [tail])
        return (self._overhead_ms, self._per_seq_ms, lin_min, per_token, self.decode_ms_per_ctx_token,
                self.prefill_ms_per_len2)

    def decode_base_s(self, n_seqs: int) -> float:
        """Time of a decode step of n_seqs sequences, excluding the context-dependent attention."""
        hit = self._base_cache.get(n_seqs)
        if hit is None:   # memoised for the same reason as linear_ms: a few batch sizes, asked often
            hit = self._base_cache[n_seqs] = (self._overhead_ms + self._per_seq_ms * n_seqs
                                              + self.linear_ms(n_seqs)) / 1e3
        return hit

    def prefill_s(self, lengths_sum: int, lengths_sq_sum: float, n_seqs: int) -> float:
        ms = (self._overhead_ms + self._per_seq_ms * n_seqs + self.linear_ms(lengths_sum)
              + self.prefill_ms_per_len2 * lengths_sq_sum)
        return ms / 1e3

    def step_s(self, tokens: int, n_seqs: int, decode_ctx: int, prefill_attn: float) -> float:
        """One mixed step (vLLM V1): `tokens` scheduled over n_seqs sequences, decoding ones
        attending to decode_ctx cached tokens in all, prefill chunks adding prefill_attn =
        sum((done + chunk)^2 - done^2) of attention work (a whole prompt: L^2, as in prefill_s)."""
        ms = (self._overhead_ms + self._per_seq_ms * n_seqs + self.linear_ms(tokens)
              + self.decode_ms_per_ctx_token * decode_ctx + self.prefill_ms_per_len2 * prefill_attn)
        return ms / 1e3

    def alone_s(self, prompt: int, output: int) -> tuple[float, float]:
        """(first token, last token) of one request alone on an idle engine: its prompt in one
        prefill step, then a decode step per further token."""
        first = self.prefill_s(prompt, float(prompt) ** 2, 1)
        return first, first + self.decode_run_s(1, prompt + 1, max(0, output - 1))

    def decode_run_s(self, n_seqs: int, ctx_sum: int, steps: int) -> float:
        """Total time of `steps` consecutive decode steps; every step adds n_seqs context tokens."""
        ctx_total = steps * ctx_sum + n_seqs * steps * (steps - 1) / 2
        return steps * self.decode_base_s(n_seqs) + self.decode_ms_per_ctx_token * ctx_total / 1e3
