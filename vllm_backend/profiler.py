"""Measure a model on the real engine and fit the simulator's cost model.

Measured, in a process bound to one worker's share of the devices (as real runs are): worker
startup (importing the engine runtime), load time, KV-cache capacity, per-step latency over a grid
of batch sizes x context lengths (decode steps and prefill steps apart), and unload time. Fitted by
least squares: decode  t = step + token * n + ctx * sum(context)
               prefill T = steps * step + token * tokens + len2 * sum(L^2)
Optionally (`session_sweep.ns` non-empty) the paper's multi-N profiling sweep: whole sessions of N
requests with lengths drawn from the model's output distribution, wall-timed on the engine, and
the session-time regression T_m(N, mean, max) fitted on them (mosaic/profiles/session_cost.py, the same
sweep experiments/fit_session_costs.py runs on the simulator's engine).
"""
from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_mod
import time
from typing import Any

import numpy as np

from vllm_backend.backend import prompt_ids
from vllm_backend.procgroup import DEFAULT_GRACE_S, end_processes, group_leader_entry


def run_session(engine, prompts, outputs) -> float:
    """Wall seconds of one session: every request submitted at once, each generating exactly its
    output length (ignore_eos), stepped until all finish."""
    from vllm import SamplingParams

    t = time.perf_counter()
    for i, (p, o) in enumerate(zip(prompts, outputs)):
        rid = f"s{t}-{i}"
        engine.add_request(rid, {"prompt_token_ids": prompt_ids(rid, int(p))},
                           SamplingParams(max_tokens=int(o), ignore_eos=True))
    while engine.has_unfinished_requests():
        engine.step()
    return time.perf_counter() - t


def session_samples(run, output: dict[str, Any], shapes: dict[str, Any], sweep_cfg: dict[str, Any],
                    max_len: int) -> list[dict[str, float]]:
    """The multi-N sweep with `run(prompts, outputs) -> seconds` (a real engine, or a fake in tests).
    output: the profile's {shape, mean_tokens, cap}; shapes: the profile's length_shapes."""
    from mosaic.profiles.loader import _length_distribution
    from mosaic.fitting.session_costs import sweep

    dist = _length_distribution(output, shapes, "output")
    samples = sweep(run, {"profile": dist}, {"profile": float(sweep_cfg.get("prompt_tokens", 64))},
                    list(sweep_cfg["ns"]), int(sweep_cfg.get("reps", 1)), int(sweep_cfg.get("calibration_size", 64)),
                    np.random.default_rng(int(sweep_cfg.get("seed", 0))), max_len)
    return [dict(vars(x)) for x in samples]


def fit_sessions(samples: list[dict[str, float]], kv_capacity: int, max_num_seqs: int, when: str) -> dict[str, Any]:
    """The profile's `session_fit` entry: the best form by held-out error (leave one N out)."""
    from mosaic.fitting.session_costs import SessionSample, select, to_yaml

    best, _ = select([SessionSample(**s) for s in samples], kv_capacity, max_num_seqs,
                     f"real-engine session sweep by experiments/profile.py ({when}), N in "
                     f"{sorted({int(s['n']) for s in samples})}; error on held-out N (leave one N out)")
    return to_yaml(best)


def _measure(path: str, engine_args: dict[str, Any], env: dict[str, str], grid: dict[str, Any], queue) -> None:
    os.environ.update(env)
    from vllm_backend.worker import _engine, _shutdown, isolate_from_script_dir

    isolate_from_script_dir()
    t0 = time.time()
    from vllm import SamplingParams

    startup = time.time() - t0
    t0 = time.time()
    engine = _engine(path, engine_args)
    load = time.time() - t0
    cache = engine.vllm_config.cache_config
    sched = engine.vllm_config.scheduler_config
    kv = int(cache.num_gpu_blocks * cache.block_size)
    hf = engine.vllm_config.model_config.hf_config
    arch = {k: getattr(hf, k, None) for k in ("num_hidden_layers", "hidden_size", "num_key_value_heads",
                                               "num_attention_heads", "intermediate_size", "vocab_size")}
    arch["head_dim"] = getattr(hf, "head_dim", None) or hf.hidden_size // hf.num_attention_heads
    decode, prefill = [], []
    for b in grid["batch_sizes"]:
        for length in grid["context_lengths"]:
            # Prefill: max_tokens=1, so every step until all finish is a (chunked) prefill step.
            for i in range(b):
                engine.add_request(f"p{b}-{length}-{i}", {"prompt_token_ids": prompt_ids(f"p{b}{length}{i}", length)},
                                   SamplingParams(max_tokens=1, ignore_eos=True))
            steps, t = 0, time.perf_counter()
            while engine.has_unfinished_requests():
                engine.step()
                steps += 1
            prefill.append((b * length, b * length**2, steps, time.perf_counter() - t))
            # Decode: after every sequence has its first token, each step decodes all running ones.
            gen = {}
            for i in range(b):
                rid = f"d{b}-{length}-{i}"
                engine.add_request(rid, {"prompt_token_ids": prompt_ids(rid, length)},
                                   SamplingParams(max_tokens=grid["decode_steps"] + 1, ignore_eos=True))
                gen[rid] = 0
            while engine.has_unfinished_requests():
                ready = all(g >= 1 for g in gen.values())
                running = [r for r, g in gen.items() if g < grid["decode_steps"] + 1]
                ctx = sum(length + gen[r] for r in running)
                t = time.perf_counter()
                outs = engine.step()
                dt = time.perf_counter() - t
                if ready and running:
                    decode.append((len(running), ctx, dt))
                for o in outs:
                    gen[o.request_id] = len(o.outputs[0].token_ids) if o.outputs else 0
    sessions = []
    if grid.get("session_sweep", {}).get("ns"):
        sessions = session_samples(lambda p, o: run_session(engine, p, o), grid["session_output"],
                                   grid["length_shapes"], grid["session_sweep"],
                                   int(engine.vllm_config.model_config.max_model_len))
    t0 = time.time()
    _shutdown(engine)
    unload = time.time() - t0
    queue.put({"startup_s": startup, "load_time_s": load, "kv_capacity": kv, "unload_time_s": unload,
               "max_num_batched_tokens": int(sched.max_num_batched_tokens), "arch": arch,
               "decode": decode, "prefill": prefill, "sessions": sessions})


def measure(path: str, engine_args: dict[str, Any], env: dict[str, str], grid: dict[str, Any],
            timeout_s: float = 900) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    # Its own process group, ended with everything it started (EngineCore) however profiling ends.
    p = ctx.Process(target=group_leader_entry, args=(DEFAULT_GRACE_S, _measure, path, engine_args, env, grid, q))
    p.start()
    deadline = time.time() + timeout_s
    done = False
    try:
        while time.time() < deadline:
            try:
                result = q.get(timeout=2.0)
                done = True
                return result
            except queue_mod.Empty:
                if not p.is_alive():
                    raise RuntimeError(f"profiling {path} failed: the measuring process exited with code "
                                       f"{p.exitcode} (see its log above)") from None
        raise RuntimeError(f"profiling {path} did not finish within {timeout_s:.0f} s")
    finally:
        end_processes([p], wait_s=60 if done else 0)


def fit(m: dict[str, Any]) -> dict[str, float]:
    """Least-squares fit of the step model, coefficients in milliseconds, all >= 0."""
    d = np.array(m["decode"], dtype=float)
    a = np.column_stack([np.ones(len(d)), d[:, 0], d[:, 1]])
    (step, token, ctx), *_ = np.linalg.lstsq(a, d[:, 2] * 1e3, rcond=None)
    step, token, ctx = max(step, 0.0), max(token, 0.0), max(ctx, 0.0)
    p = np.array(m["prefill"], dtype=float)
    rest = p[:, 3] * 1e3 - p[:, 2] * step - token * p[:, 0]
    len2 = max(0.0, float(np.dot(p[:, 1], rest) / np.dot(p[:, 1], p[:, 1])))
    return {"step_ms": float(step), "token_ms": float(token), "ctx_ms": float(ctx), "len2_ms": len2}


def fit_error(m: dict[str, Any], cost: dict[str, float]) -> dict[str, float]:
    """Relative error of the fit on the measured decode steps (median and p90 of |pred/obs - 1|)."""
    d = np.array(m["decode"], dtype=float)
    pred = cost["step_ms"] + cost["token_ms"] * d[:, 0] + cost["ctx_ms"] * d[:, 1]
    err = np.abs(pred / (d[:, 2] * 1e3) - 1)
    return {"median": float(np.median(err)), "p90": float(np.percentile(err, 90))}


def model_entry(name: str, path: str, kind: str, m: dict[str, Any], cost: dict[str, float],
                output: dict[str, Any], when: str) -> dict[str, Any]:
    """A profile-file entry for one measured model (format of mosaic/profiles/data/*.yaml)."""
    a = m["arch"]
    layers, hidden = int(a["num_hidden_layers"]), int(a["hidden_size"])
    params = (layers * (4 * hidden * hidden + 3 * hidden * int(a["intermediate_size"]))
              + 2 * int(a["vocab_size"]) * hidden) / 1e9
    return {"hf_id": path, "kind": kind, "params_b": round(params, 6), "weight_gib": round(params * 2 / 1.073741824, 6),
            "kv_bytes_per_token": 2 * layers * int(a["num_key_value_heads"]) * int(a["head_dim"]) * 2,
            "n_layers": layers, "hidden_size": hidden,
            "load_time_s": round(m["load_time_s"], 3), "unload_time_s": round(m["unload_time_s"], 3),
            "kv_capacity": m["kv_capacity"], "cost": {k: float(f"{v:.6g}") for k, v in cost.items()},
            "output": dict(output),
            "sources": [f"load/unload time, KV capacity, step-cost fit: measured by experiments/profile.py ({when})",
                        "output lengths: profile config (a workload property, not measured)"]}
