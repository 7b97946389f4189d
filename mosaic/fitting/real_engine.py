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

`profile_models` (`python experiments/profile_models.py model=NAME|all`) measures and fits models of
a registry and writes a profile file backend=sim can use; `measure_tp` (`python
experiments/profile_tp.py`) measures an engine's tensor-parallel scaling for its `engine.tensor_parallel`.
"""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import os
import queue as queue_mod
import socket
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mosaic.profiles import load_profiles, parse_profiles
from mosaic.profiles.loader import _DATA as PROFILES_DIR
from vllm_backend.backend import device_env, prompt_ids, tp_env
from vllm_backend.models import ModelRegistry

ROOT = Path(__file__).resolve().parents[1]   # the repository: conf/, relative output paths
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
    from mosaic.profiles.loader import length_distribution
    from mosaic.fitting.session_costs import sweep

    dist = length_distribution(output, shapes, "output")
    samples = sweep(run, {"profile": dist}, {"profile": float(sweep_cfg.get("prompt_tokens", 64))},
                    list(sweep_cfg["ns"]), int(sweep_cfg.get("reps", 1)), int(sweep_cfg.get("calibration_size", 64)),
                    np.random.default_rng(int(sweep_cfg.get("seed", 0))), max_len)
    return [dict(vars(x)) for x in samples]


def fit_sessions(samples: list[dict[str, float]], kv_capacity: int, max_num_seqs: int, when: str) -> dict[str, Any]:
    """The profile's `session_fit` entry: the best form by held-out error (leave one N out)."""
    from mosaic.fitting.session_costs import SessionSample, select, to_yaml

    best, _ = select([SessionSample(**s) for s in samples], kv_capacity, max_num_seqs,
                     f"real-engine session sweep by experiments/profile_models.py ({when}), N in "
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
            "sources": [f"load/unload time, KV capacity, step-cost fit: measured by experiments/profile_models.py ({when})",
                        "output lengths: profile config (a workload property, not measured)"]}


# ---------------------------------------------------------------- profile files

def model_grid(cfg: dict, registry: ModelRegistry, name: str, base: dict) -> dict:
    """The measurement grid for one model, plus what its session sweep needs (its output lengths)."""
    grid = dict(cfg["grid"], session_sweep=cfg.get("session_sweep") or {})
    kind = registry.models[name].get("kind", "instruct")
    return dict(grid, session_output=cfg["output"][kind], length_shapes=base["length_shapes"])


def profile_models(cfg: dict) -> Path:
    """Measure the configured model (or all of the registry's, model=all) and write the profile file
    `cfg["out"]` (conf/profile.yaml); returns its path."""
    base = yaml.safe_load((PROFILES_DIR / "moa6_a100.yaml").read_text())
    registry = ModelRegistry(cfg["models"])
    names = sorted(registry.models) if cfg["model"] == "all" else [cfg["model"]]
    for n in names:
        registry.resolve(n)  # clear error on an unknown model before anything starts
    opts = cfg["backend"]["options"]
    envs = device_env(cfg["n_workers"], opts.get("device", "auto"), opts.get("kv_cache_gib", 1))
    when = f"{socket.gethostname()} {time.strftime('%Y-%m-%d')}, {envs[0]}"
    measured = {}
    # Profile n_workers models at a time, each on its own worker's devices: real runs load and
    # serve concurrently, and on a shared host that contention is part of what must be measured.
    for i in range(0, len(names), cfg["n_workers"]):
        batch = names[i:i + cfg["n_workers"]]
        with cf.ThreadPoolExecutor(len(batch)) as pool:
            futs = {n: pool.submit(measure, *registry.resolve(n), envs[j], model_grid(cfg, registry, n, base))
                    for j, n in enumerate(batch)}
            for n, f in futs.items():
                measured[n] = f.result()
                print(f"measured {n}: load {measured[n]['load_time_s']:.1f} s, KV {measured[n]['kv_capacity']} tokens",
                      flush=True)
    fits = {n: fit(m) for n, m in measured.items()}
    first = measured[names[0]]
    engine = {
        "device": f"{opts.get('device', 'auto')}: {envs[0]}", "memory_gib": 80.0,
        "max_num_seqs": int(registry.engine.get("max_num_seqs", 256)),
        "max_num_batched_tokens": first["max_num_batched_tokens"], "max_model_len": registry.max_model_len,
        "gpu_memory_utilization": 0.9,
        # Hardware figures below are unused: every model carries its own measured `cost`.
        "step_overhead_ms": statistics.median(f["step_ms"] for f in fits.values()), "per_seq_overhead_ms": 0.0,
        "linear_ms_by_tokens": [[1, 1.0], [2, 1.0]], "linear_reference_params_b": 1.0,
        "hbm_bandwidth_gbs": 1.0, "bandwidth_efficiency": 1.0, "peak_tflops": 1.0, "flops_efficiency": 1.0,
        "worker_startup_s": round(statistics.median(m["startup_s"] for m in measured.values()), 3),
        "sources": [f"measured by experiments/profile_models.py ({when})"]}
    models = {}
    for n, m in measured.items():
        kind = registry.models[n].get("kind", "instruct")
        models[n] = model_entry(n, registry.resolve(n)[0], kind, m, fits[n], cfg["output"][kind], when)
        err = fit_error(m, fits[n])
        print(f"{n}: {fits[n]}  decode-step fit error median {err['median']:.1%}, p90 {err['p90']:.1%}")
        if m.get("sessions"):   # the multi-N session sweep ran: fit T_m(N, mean, max) as the paper does
            models[n]["session_fit"] = fit_sessions(m["sessions"], m["kv_capacity"], engine["max_num_seqs"], when)
            sf = models[n]["session_fit"]
            print(f"{n}: session regression '{sf['form']}', held-out error median {sf['error_median']:.1%}, "
                  f"max {sf['error_max']:.1%} ({sf['n_points']} sessions)")
    doc = {"engine": engine, "length_shapes": base["length_shapes"], "models": models}
    parse_profiles(doc, where="measured profile")  # what we write must load
    out = Path(cfg["out"] or f"profiles/{cfg['models']['name']}_{opts.get('device', 'auto')}.yaml")
    out = out if out.is_absolute() else ROOT / out
    if out.exists():  # TP scaling is measured by experiments/profile_tp.py: keep it across re-profiles
        old = ((yaml.safe_load(out.read_text()) or {}).get("engine") or {}).get("tensor_parallel")
        if old:
            doc["engine"]["tensor_parallel"] = old
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("# Written by experiments/profile_models.py; rerun it to refresh.\n" + yaml.safe_dump(doc, sort_keys=False))
    load_profiles(str(out))
    return out


# ---------------------------------------------------------------- tensor-parallel scaling
# The same requests on one model at TP=1 and TP=N. Each engine serves three batches of the same
# requests in turn: `out` tokens (its first batch, which also pays the engine's one-off warm-up),
# `long_out` tokens, then `out` tokens again. The step time is the slope between the last two, so a
# warm-up that a short batch would mistake for slow steps is kept apart:
# step_speedup[N] = TP=1 step time / TP=N step time, and load_overhead_s = TP=N (start-up + warm-up)
# minus TP=1 (start-up + warm-up), medians of the repeats. Each engine runs in its own process, as the
# vLLM backend runs them.

TP_DEFAULTS = {"models": "tiny", "model": "Qwen", "tp": 2, "device": "cpu", "repeats": 3, "requests": 8,
               "prompt": 36, "out": 16, "long_out": 144}


def _serve_tp(path: str, engine_args: dict, env: dict, n_requests: int, prompt: int, outs: list[int], q) -> None:
    """One engine in its own process: its load time and the serving time of each batch in `outs`."""
    os.environ.update(env)
    from vllm_backend.worker import isolate_from_script_dir

    isolate_from_script_dir()
    from vllm import EngineArgs, LLMEngine, SamplingParams

    t0 = time.time()
    engine = LLMEngine.from_engine_args(EngineArgs(model=path, **engine_args))
    t1 = time.time()
    serve = []
    for b, out in enumerate(outs):
        t = time.time()
        for i in range(n_requests):
            engine.add_request(f"b{b}r{i}", {"prompt_token_ids": [4 + (i + j) % 500 for j in range(prompt)]},
                               SamplingParams(max_tokens=out, ignore_eos=True, temperature=0.0))
        while engine.has_unfinished_requests():
            engine.step()
        serve.append(time.time() - t)
    core = getattr(engine, "engine_core", None)
    if core is not None and hasattr(core, "shutdown"):
        core.shutdown()
    q.put({"load_s": t1 - t0, "serve_s": serve})


def step_and_warmup(serve: list[float], out: int, long_out: int) -> tuple[float, float]:
    """(seconds per decode step, one-off warm-up seconds) from the three batches' serving times."""
    first, long_, again = serve
    return (long_ - again) / (long_out - out), max(0.0, first - again)


def measure_tp(cfg: dict) -> dict:
    """The `engine.tensor_parallel` block from TP=1 and TP=cfg["tp"] engines (options: TP_DEFAULTS)."""
    registry = ModelRegistry(yaml.safe_load((ROOT / "conf" / "models" / f"{cfg['models']}.yaml").read_text()))
    path, args = registry.resolve(cfg["model"])
    tp = int(cfg["tp"])
    ranks = tuple(range(tp))
    env_tp, tp_args, mode = tp_env(ranks, tp, cfg["device"], 1, True)
    # TP=1 on one rank's share of the machine (what a single-GPU session gets).
    runs = {1: ({**args}, device_env(tp, cfg["device"], 1)[0]), tp: ({**args, **tp_args}, env_tp)}
    out, long_out = int(cfg["out"]), int(cfg["long_out"])
    if not 0 < out < long_out:
        raise SystemExit(f"need 0 < out < long_out (got out={out}, long_out={long_out})")
    ctx = mp.get_context("spawn")
    got: dict[int, list[dict]] = {1: [], tp: []}
    for _ in range(int(cfg["repeats"])):
        for degree, (engine_args, env) in runs.items():
            q = ctx.Queue()
            p = ctx.Process(target=_serve_tp, args=(path, engine_args, env, int(cfg["requests"]), int(cfg["prompt"]),
                                                 [out, long_out, out], q))
            p.start()
            got[degree].append(q.get(timeout=900))
            p.join(timeout=60)
            print(f"TP={degree}: {got[degree][-1]}", flush=True)
    fits = {d: [step_and_warmup(r["serve_s"], out, long_out) for r in rs] for d, rs in got.items()}
    step = {d: statistics.median(f[0] for f in fs) for d, fs in fits.items()}
    warm = {d: statistics.median(f[1] for f in fs) for d, fs in fits.items()}
    load = {d: statistics.median(r["load_s"] for r in rs) for d, rs in got.items()}
    if min(step.values()) <= 0:
        raise SystemExit(f"step times {step} are not positive: the machine is too noisy; rerun it idle or "
                         f"raise long_out (now {long_out})")
    return {"step_speedup": {tp: round(step[1] / step[tp], 3)},
            "load_overhead_s": round(max(0.0, load[tp] + warm[tp] - load[1] - warm[1]), 1),
            "source": (f"measured by experiments/profile_tp.py ({time.strftime('%Y-%m-%d')}, {cfg['device']}, "
                       f"model {cfg['model']}, {mode}): median of {cfg['repeats']} runs, {cfg['requests']} requests "
                       f"x {out} / {long_out} / {out} tokens per engine; step TP=1 {step[1] * 1e3:.1f} ms vs "
                       f"TP={tp} {step[tp] * 1e3:.1f} ms, warm-up {warm[1]:.1f} s vs {warm[tp]:.1f} s, "
                       f"load {load[1]:.1f} s vs {load[tp]:.1f} s")}
