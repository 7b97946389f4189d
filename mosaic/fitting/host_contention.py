"""Measure how a worker's engine steps slow down when other workers of its host are busy.

Workers that share a host (the CPU workers here share its memory bandwidth, caches and the cores
their client and scheduler threads float over) step faster alone than beside a busy neighbour. The
profiler (real_engine.py) measures every model on all workers at once, so a profile's step costs are
the all-busy ones; a session that ends alone on an otherwise idle host runs faster than that.

Method: for each model and each count b of busy workers (1..n_workers), b engines are started on
workers 0..b-1 (each in its own process, bound to its worker's share as real runs are), wait for one
another (a barrier, so their serving overlaps), then serve three batches of the same requests:
`out`, `long_out` and `out` tokens each. A decode step's time is the slope between the last two
(real_engine.step_and_warmup, as for tensor-parallel scaling), per engine. The profile's
`engine.host_contention.step_scale[b]` = median step time with b busy / median with n_workers busy
(1 at n_workers, the profiled condition), per model and as the median over the models (for one not
measured); the simulator scales each step by the entry for the number of its host's workers that
are serving at that moment (cluster.workers_per_host says which share).
Busy counts are measured in interleaved rounds (1, 2, ..., n, 1, 2, ...), so a drift of the machine
spreads over all of them; the spread over repeats is written into the source.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_mod
import statistics
import time
from typing import Any

import yaml

from mosaic.core.errors import ConfigError
from mosaic.fitting.real_engine import ROOT, step_and_warmup
from mosaic.fitting.options import device_option, int_option, models_option
from vllm_backend.backend import device_env, prompt_ids

# The six experts of models=tiny (the models of tiny_cpu.yaml); model=all: every model of the registry.
DEFAULTS = {"models": "tiny", "model": "LlamaR1,QwenR1,Gemma,Exaone,GLM,Qwen", "n_workers": 2, "device": "cpu", "repeats": 3,
            "requests": 32, "prompt": 256, "out": 16, "long_out": 144, "profile": ""}


def _serve(path: str, engine_args: dict, env: dict, barrier, n_requests: int, prompt: int, outs: list[int], q) -> None:
    """One engine in its own process: load, wait for the others, then time each batch of `outs`."""
    os.environ.update(env)
    from vllm_backend.worker import _engine, _shutdown, isolate_from_script_dir

    isolate_from_script_dir()
    from vllm import SamplingParams

    t = time.perf_counter()
    engine = _engine(path, engine_args)
    load = time.perf_counter() - t
    barrier.wait(timeout=900)
    serve = []
    for b, out in enumerate(outs):
        t = time.perf_counter()
        for i in range(n_requests):
            rid = f"b{b}r{i}"
            engine.add_request(rid, {"prompt_token_ids": prompt_ids(rid, prompt)},
                               SamplingParams(max_tokens=out, ignore_eos=True))
        while engine.has_unfinished_requests():
            engine.step()
        serve.append(time.perf_counter() - t)
    _shutdown(engine)
    q.put({"load_s": load, "serve_s": serve})


def step_scale(steps: dict[int, list[float]]) -> dict[int, float]:
    """busy workers -> median step time over the median at the most busy workers measured."""
    full = statistics.median(steps[max(steps)])
    return {b: round(statistics.median(s) / full, 3) for b, s in sorted(steps.items())}


def spread(values: list[float]) -> float:
    """Half the range over the median: the run-to-run noise of one busy count's step time."""
    return (max(values) - min(values)) / 2 / statistics.median(values)


def _round(path: str, args: dict, envs: list[dict], busy: int, cfg: dict, outs: list[int]) -> list[dict]:
    ctx = mp.get_context("spawn")
    q, barrier = ctx.Queue(), ctx.Barrier(busy)
    procs = [ctx.Process(target=_serve, args=(path, args, envs[w], barrier, int(cfg["requests"]), int(cfg["prompt"]),
                                              outs, q)) for w in range(busy)]
    for p in procs:
        p.start()
    got: list[dict] = []
    deadline = time.time() + 1800
    try:
        while len(got) < busy:
            try:
                got.append(q.get(timeout=2.0))
            except queue_mod.Empty:
                if any(p.exitcode not in (None, 0) for p in procs) or time.time() > deadline:
                    raise RuntimeError(f"measuring {path} with {busy} busy workers failed: an engine process "
                                       f"exited with {[p.exitcode for p in procs]} (see its log above)") from None
        return got
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()


def measure_contention(cfg: dict) -> dict[str, Any]:
    """The `engine.host_contention` block (options: DEFAULTS)."""
    n = int_option(cfg, "n_workers", 1)
    out, long_out = int_option(cfg, "out", 1), int_option(cfg, "long_out", 2)
    if n < 2:
        raise ConfigError(f"n_workers must be >= 2 (got {n}): contention needs a second worker on the host")
    if not out < long_out:
        raise ConfigError(f"need 0 < out < long_out (got out={out}, long_out={long_out})")
    for key in ("repeats", "requests", "prompt"):
        int_option(cfg, key, 1)
    device_option(cfg["device"], n)
    if cfg["profile"]:   # the file the block goes into: checked before the minutes of measuring
        profile_file(cfg["profile"])
    registry = models_option(cfg)
    names = (sorted(registry.models) if cfg["model"] == "all"
             else [m.strip() for m in str(cfg["model"]).split(",") if m.strip()])
    for name in names:
        registry.resolve(name)
    envs = device_env(n, cfg["device"], 1)
    outs = [out, long_out, out]
    per_model: dict[str, dict[int, list[float]]] = {}
    per_model_loads: dict[str, dict[int, list[float]]] = {}
    for name in names:
        path, args = registry.resolve(name)
        steps: dict[int, list[float]] = {b: [] for b in range(1, n + 1)}
        loads: dict[int, list[float]] = {b: [] for b in range(1, n + 1)}
        for _ in range(int(cfg["repeats"])):
            for busy in steps:
                for r in _round(path, args, envs, busy, cfg, outs):
                    steps[busy].append(step_and_warmup(r["serve_s"], out, long_out)[0])
                    loads[busy].append(r["load_s"])
                print(f"{name}, {busy} busy: step {steps[busy][-1] * 1e3:.2f} ms, load {r['load_s']:.1f} s", flush=True)
        if min(min(s) for s in steps.values()) <= 0:
            raise ConfigError(f"{name}: step times are not positive: the machine is too noisy; rerun it idle or "
                              f"raise long_out (now {long_out})")
        per_model[name], per_model_loads[name] = steps, loads
    scales = {name: step_scale(s) for name, s in per_model.items()}
    # Per model (a step's fixed host-side cost weighs more in a small model's step), and the median
    # over them for models not measured.
    scale = {b: round(statistics.median(s[b] for s in scales.values()), 3) for b in range(1, n + 1)}
    detail = "; ".join(
        f"{name} " + ", ".join(f"{b} busy {statistics.median(v) * 1e3:.1f} ms ±{spread(v):.0%}" for b, v in s.items())
        for name, s in per_model.items())
    load_detail = ", ".join(f"{b} loading {statistics.median(x for v in per_model_loads.values() for x in v[b]):.1f} s"
                            for b in range(1, n + 1))
    # Loads (engine start-up with dummy weights: CPU work) pooled over models: one host property.
    load_scales = [step_scale(v) for v in per_model_loads.values()]
    load_scale = {b: round(statistics.median(s[b] for s in load_scales), 3) for b in range(1, n + 1)}
    return {"step_scale": scale, "models": scales, "load_scale": load_scale,
            "source": (f"measured by experiments/profile_contention.py ({time.strftime('%Y-%m-%d')}, {cfg['device']}, "
                       f"{n} workers): {cfg['repeats']} interleaved rounds per busy count, {cfg['requests']} requests of "
                       f"{cfg['prompt']} tokens x {out} / {long_out} / {out} output tokens per engine; median decode "
                       f"step (±half range): {detail}; median load over the models: {load_detail}")}


def profile_file(profile: str):
    """The profile file `profile` names (relative to the repository): it must exist, load, and be
    writable, since the measured block is written into it."""
    from pathlib import Path

    from mosaic.profiles import load_profiles

    p = Path(profile)
    p = p if p.is_absolute() else ROOT / p
    if not p.is_file():
        raise ConfigError(f"profile={profile}: no such file; name the profile file to update, e.g. "
                          "profile=mosaic/profiles/data/tiny_cpu.yaml")
    load_profiles(str(p))   # a broken file is said now (one line naming file and field), not after measuring
    if not os.access(p, os.W_OK):
        raise ConfigError(f"profile={profile}: not writable; make it writable or copy it and name the copy")
    return p


def write_into(profile: str, block: dict[str, Any]) -> str:
    """Set `engine.host_contention` of the profile file at `profile` (relative to the repository)."""
    from mosaic.profiles import load_profiles

    p = profile_file(profile)
    text = p.read_text()
    doc = yaml.safe_load(text)
    doc["engine"]["host_contention"] = block
    header = "".join(line + "\n" for line in text.splitlines() if line.startswith("#"))
    p.write_text(header + yaml.safe_dump(doc, sort_keys=False))
    load_profiles(str(p))   # what we write must load
    return str(p)
