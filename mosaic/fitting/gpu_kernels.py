"""Measure the engine cost model's kernel inputs on a GPU (or the CPU) with torch's own kernels.

The cost model (mosaic/engine/step_cost.py) prices a step as fixed overheads plus three kernel
terms: the linear layers at the step's token count, decode attention per cached token read, and
prefill attention per squared prompt length. For a device no engine was profiled on, those terms
came from datasheet figures and assumed efficiencies. This module times them instead, per model,
from the model's own layer shapes (its `arch` block in the profile file), with bf16 weights drawn
at random (no checkpoint is read: the kernels' time does not depend on the values):

- linear: every layer's QKV, output, gate/up and down projections (distinct weights per layer, so
  nothing is served from cache), plus the LM head over one row per sequence (at most
  `max_num_seqs`), at each token count of LINEAR_TOKENS; timed alone (`ms`) and with each layer's
  other kernels besides attention (`step_ms`: norms, rotary, cache write, activation, emulated by
  _between_gemms), which is the table a profile uses;
- decode attention: one query per sequence against its cached K and V (grouped-query heads folded
  into the query length, which is the same arithmetic), over batch x context sizes; the fitted slope
  is milliseconds per cached token per layer;
- prefill attention: causal attention over one prompt of each length; the fitted slope is
  milliseconds per squared length per layer.

These are torch's kernels (cuBLAS GEMMs and scaled_dot_product_attention's default backend), not
vLLM's fused ones; on a GPU each timing replays a CUDA graph, as vLLM runs its steps, so it is the
GPU's time without Python's per-kernel dispatch, and a step's host-side overheads stay the engine
profile's. Only torch, PyYAML and the standard library are imported, so the module runs on a
machine with no MOSAIC dependencies (experiments/measure_gpu_kernels.py is its command).
"""
from __future__ import annotations

import json
import math
import statistics
import sys
import time
from typing import Any, Callable

LINEAR_TOKENS = (1, 16, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
DECODE_SHAPES = ((1, 2048), (8, 4096), (32, 2048), (64, 4096), (128, 8192), (256, 1024))   # (sequences, context)
PREFILL_LENGTHS = (1024, 2048, 4096, 8192)
ARCH_KEYS = ("n_layers", "hidden_size", "intermediate_size", "n_heads", "n_kv_heads", "head_dim", "vocab_size")
ROTATE_BYTES = 512 * 2**20   # attention buffers cycled per timing, well above any GPU's L2 cache


def arch_of(name: str, model: dict[str, Any]) -> dict[str, int]:
    """The layer shapes of a model block of a profile file (its n_layers, hidden_size and arch)."""
    arch = dict(model.get("arch") or {})
    arch.update(n_layers=model.get("n_layers"), hidden_size=model.get("hidden_size"))
    missing = [k for k in ARCH_KEYS if not isinstance(arch.get(k), int) or arch[k] < 1]
    if missing:
        raise ValueError(f"models.{name}: needs whole numbers >= 1 for {missing} (arch: intermediate_size, "
                         "n_heads, n_kv_heads, head_dim, vocab_size from the model's config.json)")
    if arch["n_heads"] % arch["n_kv_heads"]:
        raise ValueError(f"models.{name}.arch: n_heads ({arch['n_heads']}) must be a multiple of n_kv_heads "
                         f"({arch['n_kv_heads']})")
    return {k: int(arch[k]) for k in ARCH_KEYS}


def _timer(torch, device) -> Callable[[Callable[[], None], int], float]:
    """ms per call of fn over `reps` calls, after one call to warm up."""
    if device.type == "cuda":
        def run(fn, reps):
            fn()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            for _ in range(reps):
                fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / reps
    else:
        def run(fn, reps):
            fn()
            t0 = time.perf_counter()
            for _ in range(reps):
                fn()
            return (time.perf_counter() - t0) * 1e3 / reps
    return run


TIMING_MS = 200.0   # one timing's length at most: the largest shapes take up to a second a call


def _graphed(torch, device, fn: Callable[[], None]) -> Callable[[], None]:
    """fn's kernels captured in a CUDA graph (replayed as one launch), as vLLM runs its steps, so the
    timing is the GPU's and not Python's dispatch of each kernel. On the CPU: fn itself."""
    if device.type != "cuda":
        return fn
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):   # torch's rule: run once off the capture before capturing
        fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


def _repeat(timer, fn, reps: int, repeats: int) -> dict[str, float]:
    """Median of `repeats` timings of up to `reps` calls each (fewer where a call is long, so a
    timing lasts about TIMING_MS at most) and their spread ((max - min) / median)."""
    once = timer(fn, 1)
    reps = max(1, min(reps, int(TIMING_MS / max(once, 1e-6))))
    ms = [timer(fn, reps) for _ in range(repeats)]
    med = statistics.median(ms)
    return {"ms": med, "spread": (max(ms) - min(ms)) / med if med > 0 else 0.0}


def _fit_slope(xs: list[float], ys: list[float], what: str = "") -> tuple[float, float]:
    """Least-squares (intercept, slope) of ys on xs; ValueError naming `what` where the time does
    not grow with the work (the shapes are too small for the timer's noise), since a profile cannot
    use a slope <= 0."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    if what and not slope > 0:
        raise ValueError(f"{what}: the time does not grow with the work over these shapes (slope {slope:.3g}), so "
                         "the timer's noise is larger than the work; time larger shapes or more repeats")
    return my - slope * mx, slope


def _between_gemms(torch, device, dtype, arch: dict[str, int], n: int) -> Callable[[], None]:
    """One layer's kernels besides its GEMMs and attention, as vLLM runs a Qwen3/Llama layer: two
    fused residual-add + RMSNorms, the q and k head norms, rotary embedding of q and k, the K/V
    write into the cache, SiLU-and-mul. Each is one elementwise torch kernel over the same tensors
    (an emulation: the same count of kernels and about the same bytes, not vLLM's own kernels)."""
    h, hd, kvh, inter = arch["hidden_size"], arch["head_dim"], arch["n_kv_heads"], arch["intermediate_size"]
    q_out = arch["n_heads"] * hd

    def buf(*shape):
        return torch.randn(*shape, device=device, dtype=dtype)

    x, res, xo = buf(n, h), buf(n, h), buf(n, h)
    qk, qk2 = buf(n, q_out + kvh * hd), buf(n, q_out + kvh * hd)
    q, k, q2, k2 = qk[:, :q_out], qk[:, q_out:], qk2[:, :q_out], qk2[:, q_out:]
    kv, cache = buf(n, 2 * kvh * hd), buf(n, 2 * kvh * hd)
    gate_up, act = buf(n, 2 * inter), buf(n, inter)
    scale = buf(hd).repeat(q_out // hd)

    def run():
        torch.add(x, res, out=xo)                                 # input norm (fused with the residual add)
        torch.mul(q, scale, out=q2)                               # q head norm
        torch.mul(k, scale[: kvh * hd], out=k2)                   # k head norm
        torch.mul(qk2, qk, out=qk)                                # rotary over q and k
        cache.copy_(kv)                                           # K and V into the cache
        torch.add(xo, res, out=x)                                 # post-attention norm (and add)
        torch.mul(gate_up[:, :inter], gate_up[:, inter:], out=act)   # SiLU-and-mul
    return run


def measure_linear(torch, device, dtype, arch: dict[str, int], tokens: tuple[int, ...], max_num_seqs: int,
                   reps: int, repeats: int) -> list[dict[str, float]]:
    """ms of one step's linear layers at each token count (`ms`), and of the linear layers with
    every layer's other kernels besides attention (`step_ms`, _between_gemms)."""
    F = torch.nn.functional
    h, hd = arch["hidden_size"], arch["head_dim"]
    q_out, kv_out = arch["n_heads"] * hd, 2 * arch["n_kv_heads"] * hd
    inter = arch["intermediate_size"]

    def w(out_f, in_f):   # nn.Linear's layout: (out, in), applied as x @ W^T like vLLM's layers
        return torch.randn(out_f, in_f, device=device, dtype=dtype) * in_f ** -0.5

    layers = [(w(q_out + kv_out, h), w(h, q_out), w(2 * inter, h), w(h, inter)) for _ in range(arch["n_layers"])]
    head = w(arch["vocab_size"], h)
    timer = _timer(torch, device)
    out = []
    for n in tokens:
        x = torch.randn(n, h, device=device, dtype=dtype)
        attn = torch.randn(n, q_out, device=device, dtype=dtype)
        act = torch.randn(n, inter, device=device, dtype=dtype)
        last = x[: min(n, max_num_seqs)]
        others = _between_gemms(torch, device, dtype, arch, n)

        def step(with_others: bool):
            for qkv, o, gate_up, down in layers:
                F.linear(x, qkv)
                F.linear(attn, o)
                F.linear(x, gate_up)
                F.linear(act, down)
                if with_others:
                    others()
            F.linear(last, head)

        gemms = _repeat(timer, _graphed(torch, device, lambda: step(False)), reps, repeats)
        whole = _repeat(timer, _graphed(torch, device, lambda: step(True)), reps, repeats)
        out.append({"tokens": n, **gemms, "step_ms": whole["ms"], "step_spread": whole["spread"]})
    return out


def measure_decode(torch, device, dtype, arch: dict[str, int], shapes, reps: int, repeats: int) -> dict[str, Any]:
    """Decode attention per layer over (sequences, context) shapes, and its fit per cached token."""
    sdpa = torch.nn.functional.scaled_dot_product_attention
    kvh, hd, group = arch["n_kv_heads"], arch["head_dim"], arch["n_heads"] // arch["n_kv_heads"]
    timer = _timer(torch, device)
    points = []
    for seqs, ctx in shapes:
        kv_bytes = 2 * seqs * kvh * ctx * hd * dtype.itemsize
        copies = max(1, math.ceil(ROTATE_BYTES / kv_bytes)) if device.type == "cuda" else 1
        q = torch.randn(seqs, kvh, group, hd, device=device, dtype=dtype)
        kvs = [(torch.randn(seqs, kvh, ctx, hd, device=device, dtype=dtype),
                torch.randn(seqs, kvh, ctx, hd, device=device, dtype=dtype)) for _ in range(copies)]

        def run():
            for k, v in kvs:
                sdpa(q, k, v)

        r = _repeat(timer, _graphed(torch, device, run), reps, repeats)
        points.append({"seqs": seqs, "context": ctx, "ms": r["ms"] / copies, "spread": r["spread"],
                       "gbs": kv_bytes / (r["ms"] / copies) / 1e6})
    intercept, slope = _fit_slope([p["seqs"] * p["context"] for p in points], [p["ms"] for p in points],
                                  "decode attention")
    bytes_per_token = 2 * kvh * hd * dtype.itemsize
    return {"points": points, "ms_per_ctx_token_layer": slope, "intercept_ms": intercept,
            "gbs": bytes_per_token / slope / 1e6}


def measure_prefill(torch, device, dtype, arch: dict[str, int], lengths, reps: int, repeats: int) -> dict[str, Any]:
    """Causal prefill attention per layer over prompt lengths, and its fit per squared length."""
    sdpa = torch.nn.functional.scaled_dot_product_attention
    heads, hd = arch["n_heads"], arch["head_dim"]
    timer = _timer(torch, device)
    points = []
    for length in lengths:
        q, k, v = (torch.randn(1, heads, length, hd, device=device, dtype=dtype) for _ in range(3))
        r = _repeat(timer, _graphed(torch, device, lambda: sdpa(q, k, v, is_causal=True)), reps, repeats)
        # QK^T and AV: 2 * L^2 * d flops each over all heads, halved by the causal mask
        points.append({"length": length, **r, "tflops": 2 * length**2 * heads * hd / (r["ms"] / 1e3) / 1e12})
    intercept, slope = _fit_slope([p["length"] ** 2 for p in points], [p["ms"] for p in points], "prefill attention")
    return {"points": points, "ms_per_len2_layer": slope, "intercept_ms": intercept,
            "tflops": 2 * heads * hd / (slope / 1e3) / 1e12}


def measure_copy_gbs(torch, device, reps: int, repeats: int) -> float:
    """Device memory bandwidth of a large copy, bytes read plus written."""
    n = (2 * 2**30) if device.type == "cuda" else (64 * 2**20)
    a = torch.empty(n, dtype=torch.uint8, device=device)
    b = torch.empty_like(a)
    r = _repeat(_timer(torch, device), lambda: b.copy_(a), reps, repeats)
    return 2 * n / (r["ms"] / 1e3) / 1e9


def measure(models: dict[str, dict[str, Any]], device: str = "cuda", max_num_seqs: int = 256,
            tokens=None, decode_shapes=None, prefill_lengths=None,
            reps: int = 10, repeats: int = 5, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Kernel timings of each model (name -> its profile block) on `device`: a JSON-ready dict.
    tokens, decode_shapes, prefill_lengths: None for the module's LINEAR_TOKENS, DECODE_SHAPES and
    PREFILL_LENGTHS."""
    import torch

    tokens = LINEAR_TOKENS if tokens is None else tokens
    decode_shapes = DECODE_SHAPES if decode_shapes is None else decode_shapes
    prefill_lengths = PREFILL_LENGTHS if prefill_lengths is None else prefill_lengths

    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device=cuda: torch sees no CUDA device; give device=cpu to time the CPU's kernels")
    dtype = torch.bfloat16
    torch.manual_seed(0)
    out: dict[str, Any] = {
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "measured_at": time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime()), "torch": torch.__version__,
        "dtype": "bfloat16", "cuda_graphs": dev.type == "cuda", "reps": reps, "repeats": repeats,
        "max_num_seqs": max_num_seqs, "copy_gbs": measure_copy_gbs(torch, dev, reps, repeats), "models": {}}
    log(f"{out['device']}: copy {out['copy_gbs']:.0f} GB/s")
    for name, block in models.items():
        arch = arch_of(name, block)
        t0 = time.perf_counter()
        row = {"arch": arch,
               "linear": measure_linear(torch, dev, dtype, arch, tuple(tokens), max_num_seqs, reps, repeats),
               "decode": measure_decode(torch, dev, dtype, arch, decode_shapes, reps, repeats),
               "prefill": measure_prefill(torch, dev, dtype, arch, prefill_lengths, reps, repeats)}
        out["models"][name] = row
        if dev.type == "cuda":
            torch.cuda.empty_cache()
        lin = {p["tokens"]: (round(p["ms"], 3), round(p["step_ms"], 3)) for p in row["linear"]}
        log(f"{name}: linear (and with the other kernels) ms {lin}; decode {row['decode']['gbs']:.0f} GB/s; prefill "
            f"{row['prefill']['tflops']:.0f} TFLOP/s ({time.perf_counter() - t0:.0f} s)")
    return out


def measure_profile(profile_path: str, device: str = "cuda", models: list[str] | None = None,
                    **kw: Any) -> dict[str, Any]:
    """measure() over the models of a profile file (read with PyYAML only; all when `models` is None)."""
    import yaml

    with open(profile_path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    have = doc.get("models") or {}
    names = list(have) if models is None else models
    unknown = [n for n in names if n not in have]
    if unknown:
        raise ValueError(f"models={','.join(unknown)}: not in {profile_path} (it has {', '.join(have)})")
    seqs = int((doc.get("engine") or {}).get("max_num_seqs", 256))
    return measure({n: have[n] for n in names}, device=device, max_num_seqs=seqs, **kw)


if __name__ == "__main__":
    # The bare form for a GPU machine without MOSAIC's dependencies (torch and PyYAML only):
    #   python -m mosaic.fitting.gpu_kernels PROFILE.yaml OUT.json [cuda|cpu]
    if len(sys.argv) not in (3, 4):
        sys.exit("usage: python -m mosaic.fitting.gpu_kernels PROFILE.yaml OUT.json [cuda|cpu]")
    result = measure_profile(sys.argv[1], device=sys.argv[3] if len(sys.argv) == 4 else "cuda")
    result["command"] = "python -m mosaic.fitting.gpu_kernels " + " ".join(sys.argv[1:])
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
