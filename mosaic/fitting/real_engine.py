"""Measure a model on the real engine and fit the simulator's cost model.

Measured on every worker at once (mosaic/backends/vllm/probe.py), each in a process bound to its
share of the devices (as real runs are, so the step times include the contention of a busy host):
worker start-up (importing the engine runtime), load time, the KV cache in blocks and the block size
as the engine sized them, its scheduling mode, per-step latency over a grid of batch sizes x
contexts (decode steps), of prompt batches (prefill steps, whose chunking the V1 replica
mosaic/engine/v1.py gives) and, where `grid.mixed` asks, of mixed batches (lengths drawn from
ranges, prefill chunks sharing steps with decodes), each grid `repeats` times, and unload time.
One step model is fitted to all rows by non-negative least squares in relative error:
    t = step + seq * sequences + token * tokens + ctx * sum(decode context) + len2 * prefill attention
and its error is reported beside the repeats' own noise (the profile's sources say both).
Optionally (`session_sweep.ns` non-empty) the paper's multi-N profiling sweep: whole sessions of N
requests with lengths drawn from the model's output distribution, wall-timed on the engine, and
the session-time regression T_m(N, mean, max) fitted on them (mosaic/profiles/session_cost.py, the same
sweep experiments/fit_session_costs.py runs on the simulator's engine).

`profile_models` (`python experiments/profile_models.py model=NAME|all`) measures and fits models of
a registry and writes a profile file backend=sim can use; `measure_tp` (`python
experiments/profile_tp.py`) measures an engine's tensor-parallel scaling for its `engine.tensor_parallel`.
"""
from __future__ import annotations

import json
import os
import socket
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mosaic.core.errors import ConfigError
from mosaic.core.progress import bar
from mosaic.profiles import load_profiles, parse_profiles
from mosaic.profiles.loader import BUNDLED_DIR as PROFILES_DIR
from mosaic.fitting.options import device_option, grid_option, int_option, models_option
from mosaic.core.rundir import RunDirError, check_writable_file
from mosaic.backends.vllm.backend import device_env, prompt_ids, tp_env
from mosaic.backends.vllm.models import ModelRegistry
from mosaic.backends.vllm.probe import grid_cells, in_process, measure_on, merge_workers
from mosaic.profiles.calibration import COEFS, FIT_TERMS, predict_ms, warmup_s

ROOT = Path(__file__).resolve().parents[2]   # the repository: mosaic/conf/, relative output paths


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


def engine_sessions(engine, grid: dict[str, Any]) -> list[dict[str, float]]:
    """The session sweep on a measured model's engine (probe's `after`), where the grid asks for one."""
    if not grid.get("session_sweep", {}).get("ns"):
        return []
    return session_samples(lambda p, o: run_session(engine, p, o), grid["session_output"], grid["length_shapes"],
                           grid["session_sweep"], int(engine.vllm_config.model_config.max_model_len))


def fit_sessions(samples: list[dict[str, float]], kv_capacity: int, max_num_seqs: int, when: str) -> dict[str, Any]:
    """The profile's `session_fit` entry: the best form by held-out error (leave one N out)."""
    from mosaic.fitting.session_costs import SessionSample, select, to_yaml

    best, _ = select([SessionSample(**s) for s in samples], kv_capacity, max_num_seqs,
                     f"real-engine session sweep by experiments/profile_models.py ({when}), N in "
                     f"{sorted({int(s['n']) for s in samples})}; error on held-out N (leave one N out)")
    return to_yaml(best)


def fit(m: dict[str, Any]) -> dict[str, float]:
    """Non-negative least squares of the step model on the measured rows, in relative error (a
    1 ms decode step counts as much as a 200 ms prefill): coefficients in milliseconds."""
    from scipy.optimize import nnls

    rows = m["steps"]
    a = np.array([[r[k] for k in FIT_TERMS] for r in rows], dtype=float)
    y = np.array([r["ms"] for r in rows], dtype=float)
    scale = a.max(axis=0)
    scale[scale == 0] = 1.0
    coef, _ = nnls((a / scale) / y[:, None], np.ones(len(y)))
    coef = coef / scale
    return dict(zip(COEFS, map(float, coef)))


def fit_error(m: dict[str, Any], cost: dict[str, float]) -> dict[str, Any]:
    """|predicted / measured - 1| per kind of step (median, p90), beside the measurement's own noise:
    the median over grid cells of the repeats' half range relative to their median."""
    out = {}
    for kind in ("decode", "prefill", "mixed"):
        rows = [r for r in m["steps"] if r["kind"] == kind]
        if not rows:
            continue
        pred = np.array([predict_ms(cost, r) for r in rows])
        err = np.abs(pred / np.array([r["ms"] for r in rows]) - 1)
        cells: dict[tuple[str, int], list[float]] = {}
        for r in rows:   # per cell and repeat, the mean step time; then the spread over repeats
            cells.setdefault((r["cell"], r["rep"]), []).append(r["ms"] / r["steps"])
        by_cell: dict[str, list[float]] = {}
        for (cell, _), v in cells.items():
            by_cell.setdefault(cell, []).append(float(np.mean(v)))
        noise = [(max(v) - min(v)) / 2 / float(np.median(v)) for v in by_cell.values() if len(v) > 1]
        out[kind] = {"median": float(np.median(err)), "p90": float(np.percentile(err, 90)), "n": len(rows),
                     "noise": float(np.median(noise)) if noise else float("nan")}
    return out


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
            "warmup_s": round(warmup_s(m, cost), 3),
            "kv_capacity": m["kv_capacity"], "cost": {k: float(f"{v:.6g}") for k, v in cost.items()},
            "output": dict(output),
            "sources": [f"load/unload time, KV capacity, step-cost fit: measured by experiments/profile_models.py ({when})",
                        fit_note(m, cost),
                        "output lengths: profile config (a workload property, not measured)"]}


def fit_note(m: dict[str, Any], cost: dict[str, float]) -> str:
    """The step fit's error on its own measurements beside their run-to-run noise, for the record."""
    e = fit_error(m, cost)
    parts = [f"{k} steps {v['n']}: fit error median {v['median']:.1%} p90 {v['p90']:.1%}, repeat noise "
             f"{v['noise']:.1%}" for k, v in e.items()]
    return f"step-cost fit over {len(m['steps'])} rows, {m.get('workers', 1)} workers measuring at once: " + "; ".join(parts)


# ---------------------------------------------------------------- profile files

def model_list(spec: Any, registry: ModelRegistry) -> list[str]:
    """`model`: all, one name, or several (model=[A,B] or model='A,B'); each must be in the registry,
    checked before anything starts."""
    if spec == "all":
        return sorted(registry.models)
    names = [str(x).strip() for x in spec] if isinstance(spec, (list, tuple)) else \
        [x.strip() for x in str(spec).split(",")]
    names = [n for n in names if n]
    if not names:
        raise ConfigError(f"model={spec!r}: name a model of the registry, several (model=[A,B]) or all")
    for n in names:
        registry.resolve(n)  # clear error on an unknown model before anything starts
    return list(dict.fromkeys(names))


def kept_entries(out: Path, names: list[str], device: str, max_num_seqs: int, max_model_len: int) -> dict[str, Any]:
    """What a re-profile of `names` into an existing profile file keeps from it: the entries of the
    models not re-measured (their own sources say when they were), and each re-measured model's
    `tensor_parallel` block (measured by profile_tp.py, not by this). Kept only where the old file
    describes the same engine set-up; otherwise a ConfigError before measuring, as mixing them would
    give one file two machines."""
    none: dict[str, Any] = {"models": {}, "tensor_parallel": {}}
    if not out.exists():
        return none
    try:
        old = yaml.safe_load(out.read_text()) or {}
    except yaml.YAMLError:
        return none
    models = old.get("models") if isinstance(old, dict) else None
    if not isinstance(models, dict):
        return none
    tp = {n: e["tensor_parallel"] for n, e in models.items()
          if n in names and isinstance(e, dict) and e.get("tensor_parallel")}
    others = {n: e for n, e in models.items() if n not in names}
    if others:
        eng = old.get("engine") or {}
        same = {"device": device, "max_num_seqs": max_num_seqs, "max_model_len": max_model_len}
        differs = [f"{k} {eng.get(k)!r} there, {v!r} now" for k, v in same.items() if eng.get(k) != v]
        if differs:
            raise ConfigError(f"out={out}: its other models ({', '.join(sorted(others))}) were profiled on another "
                              f"engine set-up ({'; '.join(differs)}); profile model=all into it, or write a new file")
    return {"models": others, "tensor_parallel": tp}


def check_outputs_and_sweep(cfg: dict, registry: ModelRegistry, names: list[str], base: dict) -> None:
    """The profile's output lengths (written into it) and the session sweep's settings, checked
    before any engine starts: they were read only after the minutes of measuring."""
    from mosaic.profiles.loader import length_distribution

    for kind in sorted({registry.models[n].get("kind", "instruct") for n in names}):
        output = (cfg.get("output") or {}).get(kind)
        if not isinstance(output, dict):
            raise ConfigError(f"output.{kind} must give the {kind} models' output lengths (shape, mean_tokens, cap)")
        length_distribution(output, base["length_shapes"], f"output.{kind}")
    sweep = cfg.get("session_sweep") or {}
    ns = sweep.get("ns") or []
    if ns:
        if any(isinstance(x, bool) or not isinstance(x, int) or x < 1 for x in ns):
            raise ConfigError(f"session_sweep.ns must list session sizes, each an integer >= 1 (got {list(ns)})")
        for key in ("reps", "calibration_size"):
            v = sweep.get(key, 1)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"session_sweep.{key} must be an integer >= 1 (got {v!r})")


def model_grid(cfg: dict, registry: ModelRegistry, name: str, base: dict) -> dict:
    """The measurement grid for one model, plus what its session sweep needs (its output lengths)."""
    grid = dict(cfg["grid"], session_sweep=cfg.get("session_sweep") or {})
    kind = registry.models[name].get("kind", "instruct")
    return dict(grid, session_output=cfg["output"][kind], length_shapes=base["length_shapes"])


def profile_models(cfg: dict) -> Path:
    """Measure the configured model (or all of the registry's, model=all) and write the profile file
    `cfg["out"]` (mosaic/conf/profile.yaml); returns its path."""
    n = cfg.get("n_workers")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ConfigError(f"n_workers must be an integer >= 1 (got {n!r}); profile on as many workers as "
                          "runs will use, e.g. n_workers=2")
    base = yaml.safe_load((PROFILES_DIR / "moa6_a100.yaml").read_text())
    registry = ModelRegistry(cfg["models"])
    names = model_list(cfg["model"], registry)
    grid_option(cfg["grid"], registry.max_model_len)
    opts = cfg["backend"]["options"]
    device_option(opts.get("device", "auto"), cfg["n_workers"])
    out = Path(cfg["out"] or f"profiles/{cfg['models']['name']}_{opts.get('device', 'auto')}.yaml")
    out = out if out.is_absolute() else ROOT / out
    try:   # before the minutes of measuring, not after them
        check_writable_file(out, "out" if cfg["out"] else "the profile file")
    except RunDirError as e:
        raise ConfigError(str(e)) from None
    check_outputs_and_sweep(cfg, registry, names, base)
    envs = device_env(cfg["n_workers"], opts.get("device", "auto"), opts.get("kv_cache_gib", 1),
                      opts.get("cpu_confine", "start"))
    when = f"{socket.gethostname()} {time.strftime('%Y-%m-%d')}, {envs[0]}"
    kept = kept_entries(out, names, f"{opts.get('device', 'auto')}: {envs[0]}",
                        int(registry.engine.get("max_num_seqs", 256)), registry.max_model_len)
    measured = {}
    # Each model on every worker's devices at once: real runs serve on all workers together, and on
    # a shared host (cores, memory bandwidth, caches) that contention is part of the step time.
    for n in names:
        grid = model_grid(cfg, registry, n, base)
        with bar(cfg["n_workers"] * grid["repeats"] * len(grid_cells(grid)), f"profiling {n}", unit="batch") as b:
            measured[n] = merge_workers(measure_on(*registry.resolve(n), envs, grid, lambda: b.update(1),
                                                        after=engine_sessions))
        print(f"measured {n}: load {measured[n]['load_time_s']:.1f} s, KV {measured[n]['kv_blocks']} blocks of "
              f"{measured[n]['block_size']} tokens, {len(measured[n]['steps'])} step rows", flush=True)
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
        "scheduling": first["scheduling"], "block_size": first["block_size"], "prefix_caching": first["prefix_caching"],
        "submit_ms": round(statistics.median(m["submit_ms"] for m in measured.values()), 4),
        "cpu_confine": opts.get("cpu_confine", "start"),
        "sources": [f"measured by experiments/profile_models.py ({when})"]}
    models = {}
    for n, m in measured.items():
        kind = registry.models[n].get("kind", "instruct")
        models[n] = model_entry(n, registry.reference(n), kind, m, fits[n], cfg["output"][kind], when)
        if kept["tensor_parallel"].get(n):   # profile_tp.py's block for this model: kept, as the engine's is
            models[n]["tensor_parallel"] = kept["tensor_parallel"][n]
        print(f"{n}: {fits[n]}; {fit_note(m, fits[n])}")
        if m.get("sessions"):   # the multi-N session sweep ran: fit T_m(N, mean, max) as the paper does
            models[n]["session_fit"] = fit_sessions(m["sessions"], m["kv_capacity"], engine["max_num_seqs"], when)
            sf = models[n]["session_fit"]
            print(f"{n}: session regression '{sf['form']}', held-out error median {sf['error_median']:.1%}, "
                  f"max {sf['error_max']:.1%} ({sf['n_points']} sessions)")
    models = {**kept["models"], **models}   # models not re-measured this time keep their entries
    models = {n: models[n] for n in sorted(models)}
    doc = {"engine": engine, "length_shapes": base["length_shapes"], "models": models}
    parse_profiles(doc, where="measured profile")  # what we write must load
    if out.exists():  # measured by experiments/profile_tp.py and profile_contention.py: kept across re-profiles
        old = (yaml.safe_load(out.read_text()) or {}).get("engine") or {}
        for key in ("tensor_parallel", "host_contention"):
            if old.get(key):
                doc["engine"][key] = old[key]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("# Written by experiments/profile_models.py; rerun it to refresh.\n" + yaml.safe_dump(doc, sort_keys=False))
    # The raw rows the fits came from, beside the profile (to refit or audit without re-measuring).
    raw = {n: {k: v for k, v in m.items() if k != "sessions"} for n, m in measured.items()}
    raw_path = out.with_suffix(".measured.json")
    if kept["models"] and raw_path.exists():   # the kept models' rows stay beside their entries
        try:
            old_raw = json.loads(raw_path.read_text())
        except ValueError:
            old_raw = {}
        if isinstance(old_raw, dict):
            raw = {**{n: v for n, v in old_raw.items() if n in kept["models"]}, **raw}
    raw_path.write_text(json.dumps(raw, separators=(",", ":")) + "\n")
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
# Then two prefill-bound batches (prefill_requests prompts of prefill_prompt tokens, one output token,
# every prompt its own): their time less their steps at the decode step time is per-token work, and
# token_speedup[N] = TP=1 work / TP=N work (the faster of the two batches each). prefill_requests=0
# leaves it out (step_speedup then scales every term).

TP_DEFAULTS = {"models": "tiny", "model": "Qwen", "tp": 2, "device": "cpu", "repeats": 3, "requests": 8,
               "prompt": 36, "out": 16, "long_out": 144, "prefill_requests": 32, "prefill_prompt": 600,
               "cpu_confine": "start"}


def _serve_tp(path: str, engine_args: dict, env: dict, n_requests: int, prompt: int, outs: list[int],
              prefill: tuple[int, int], q) -> None:
    """One engine in its own process: its load time, the serving time of each batch in `outs`, and
    of two batches of prefill = (requests, prompt tokens), one output token each, prompts unique."""
    os.environ.update(env)
    from mosaic.backends.vllm.worker import isolate_from_script_dir

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
    prefill_s = []
    for b in range(2 if prefill[0] else 0):
        t = time.time()
        for i in range(prefill[0]):
            engine.add_request(f"p{b}r{i}", {"prompt_token_ids": prompt_ids(f"tp-prefill-{b}-{i}", prefill[1])},
                               SamplingParams(max_tokens=1, ignore_eos=True, temperature=0.0))
        while engine.has_unfinished_requests():
            engine.step()
        prefill_s.append(time.time() - t)
    core = getattr(engine, "engine_core", None)
    if core is not None and hasattr(core, "shutdown"):
        core.shutdown()
    q.put({"load_s": t1 - t0, "serve_s": serve, "prefill_s": prefill_s})


def step_and_warmup(serve: list[float], out: int, long_out: int) -> tuple[float, float]:
    """(seconds per decode step, one-off warm-up seconds) from the three batches' serving times."""
    first, long_, again = serve
    return (long_ - again) / (long_out - out), max(0.0, first - again)


def measure_tp(cfg: dict) -> dict:
    """The `engine.tensor_parallel` block from TP=1 and TP=cfg["tp"] engines (options: TP_DEFAULTS)."""
    registry = models_option(cfg)
    path, args = registry.resolve(cfg["model"])
    tp = int_option(cfg, "tp", 2)
    for key in ("repeats", "requests", "prompt"):
        int_option(cfg, key, 1)
    prefill = (int_option(cfg, "prefill_requests", 0), int_option(cfg, "prefill_prompt", 1))
    device_option(cfg["device"], tp)
    ranks = tuple(range(tp))
    # as runs will set backend.options.cpu_confine; a profile holds one engine's measurements
    confine = str(cfg.get("cpu_confine", "start"))
    env_tp, tp_args, mode = tp_env(ranks, tp, cfg["device"], 1, True, confine)
    # TP=1 on one rank's share of the machine (what a single-GPU session gets).
    runs = {1: ({**args}, device_env(tp, cfg["device"], 1, confine)[0]), tp: ({**args, **tp_args}, env_tp)}
    out, long_out = int_option(cfg, "out", 1), int_option(cfg, "long_out", 2)
    if not out < long_out:
        raise ConfigError(f"need 0 < out < long_out (got out={out}, long_out={long_out})")
    room = registry.max_model_len   # checked here, not by the engine after its start
    for what, length in (("prompt + long_out", int(cfg["prompt"]) + long_out), ("prefill_prompt + 1", prefill[1] + 1)):
        if length > room:
            raise ConfigError(f"{what} = {length} tokens do not fit models.engine.max_model_len {room}; "
                              "measure shorter sequences")
    registry.check_local_paths()
    registry.check_hub_models(only={cfg["model"]})   # one line now, not an engine failing to start
    got: dict[int, list[dict]] = {1: [], tp: []}
    for _ in range(int(cfg["repeats"])):
        for degree, (engine_args, env) in runs.items():
            got[degree].append(in_process(_serve_tp, (path, engine_args, env, int(cfg["requests"]), int(cfg["prompt"]),
                                                      [out, long_out, out], prefill), f"TP={degree} on {path}", 900))
            print(f"TP={degree}: {got[degree][-1]}", flush=True)
    fits = {d: [step_and_warmup(r["serve_s"], out, long_out) for r in rs] for d, rs in got.items()}
    step = {d: statistics.median(f[0] for f in fs) for d, fs in fits.items()}
    warm = {d: statistics.median(f[1] for f in fs) for d, fs in fits.items()}
    load = {d: statistics.median(r["load_s"] for r in rs) for d, rs in got.items()}
    if min(step.values()) <= 0:
        raise SystemExit(f"step times {step} are not positive: the machine is too noisy; rerun it idle or "
                         f"raise long_out (now {long_out})")
    block: dict = {"step_speedup": {tp: round(step[1] / step[tp], 3)}}
    work_note = ""
    if prefill[0]:
        # Steps of a prefill batch: its tokens over the per-step budget, and the one decode step.
        steps = -(-prefill[0] * prefill[1] // int(args.get("max_num_batched_tokens") or 2048)) + 1
        work = {d: statistics.median(min(r["prefill_s"]) for r in rs) - steps * step[d] for d, rs in got.items()}
        if min(work.values()) <= 0:
            raise SystemExit(f"prefill work {work} is not positive: the machine is too noisy; rerun it idle or "
                             f"raise prefill_prompt (now {prefill[1]})")
        block["token_speedup"] = {tp: round(min(float(tp), work[1] / work[tp]), 3)}
        work_note = (f"; per-token work of {prefill[0]} x {prefill[1]}-token prefills (less {steps} steps) TP=1 "
                     f"{work[1]:.2f} s vs TP={tp} {work[tp]:.2f} s")
    return {**block,
            # The load's difference, and the first request's (paid once serving starts, not in the load).
            "load_overhead_s": round(max(0.0, load[tp] - load[1]), 1),
            "warmup_s": round(max(0.0, warm[tp] - warm[1]), 1),
            "source": (f"measured by experiments/profile_tp.py ({time.strftime('%Y-%m-%d')}, {cfg['device']}, "
                       f"model {cfg['model']}, {mode}{', cpu_confine=always' if confine == 'always' else ''}): median of {cfg['repeats']} runs, {cfg['requests']} requests "
                       f"x {out} / {long_out} / {out} tokens per engine; step TP=1 {step[1] * 1e3:.1f} ms vs "
                       f"TP={tp} {step[tp] * 1e3:.1f} ms, warm-up {warm[1]:.1f} s vs {warm[tp]:.1f} s, "
                       f"load {load[1]:.1f} s vs {load[tp]:.1f} s{work_note}")}
