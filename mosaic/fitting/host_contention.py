"""Measure how a worker's engine steps slow down when other workers of its host are busy.

Workers that share a host (the CPU workers here share its memory bandwidth, caches and the cores
their client and scheduler threads float over) step faster alone than beside a busy neighbour. The
profiler (real_engine.py) measures every model on all workers at once, so a profile's step costs are
the all-busy ones; a session that ends alone on an otherwise idle host runs faster than that.

Method (method=grid, the default): for each model and each count b of busy workers (1..n_workers),
the profiler's own batches (mosaic/backends/vllm/probe.py, as profile_models and check_profile time them:
`requests` prompts of `prompt` tokens, `long_out` output tokens each, timed whole) run on workers
0..b-1 at once, each bound to its worker's share as real runs are, the other workers idle. The
profile's `engine.host_contention.step_scale[b]` = median batch time with b busy / with n_workers
busy, per model and as the median over the models (for one not measured). The all-busy round is the
profiler's own condition, so the factors are relative to what the profile's step costs describe;
the simulator scales each step by the entry for the number of its host's workers that are serving at
that moment (cluster.workers_per_host says which share).
method=lockstep, kept to compare: b engines wait for one another (a barrier) before each of three
batches of the same requests, `out`, `long_out` and `out` tokens, and a decode step is the slope
between the last two (real_engine.step_and_warmup). Engines in lockstep can reach a both-busy step
slower than any the profiler's batches reach, so its lone factors are relative to a slower step than
the profiled one and come out lower than the grid method's (a warning says so when it happens).
Busy counts are measured in interleaved rounds (1, 2, ..., n, 1, 2, ...), so a drift of the machine
spreads over all of them; the spread over repeats is written into the source.

The factor depends on the batch (a lone engine decoding one sequence gains less from an idle
neighbour than one decoding 32), so an agent graph's engines (1-3 sequences each) need the factor at
their own batch. With
several request counts (`requests=1,4,16,64`, up to the engines' max_num_seqs, since a step beyond the
largest count takes that count's factor) every round serves each count in turn, and the block gets
`by_batch`: per model, per running sequences, the busy-count table; the simulator interpolates it in
log(sequences) (mosaic/engine/host.py). `models` holds each model's table at the largest count (for steps of
unknown batch).

An engine that has run out of requests still loads its host for a while (an agent graph's engines
idle between requests): vLLM's model-runner process spins on its shared-memory queue for 1 s after
its last step (idle_spin_s, read from the installed vLLM). With spin=true each repeat adds a round of
worker 0 serving (the same batches) beside an engine kept spinning on worker 1 (a 1-token request every PING_S), and
spin_weight = (step beside it - alone) / (step beside a serving engine - alone): the spinning engine's
share of a busy worker, the median over models and counts.
"""
from __future__ import annotations

import os
import queue as queue_mod
import statistics
import threading
import time
from typing import Any

import yaml

from mosaic.core.errors import ConfigError
from mosaic.backends.vllm.probe import measure, measure_on
from mosaic.fitting.real_engine import ROOT, step_and_warmup
from mosaic.fitting.options import bool_option, device_option, int_option, models_option
from mosaic.backends.vllm.backend import device_env, prompt_ids
from mosaic.backends.vllm.procgroup import spawn_context

# The six experts of models=tiny (the models of tiny_cpu.yaml); model=all: every model of the registry.
DEFAULTS = {"models": "tiny", "model": "LlamaR1,QwenR1,Gemma,Exaone,GLM,Qwen", "n_workers": 2, "device": "cpu", "repeats": 3,
            "requests": "1,4,16,64", "prompt": 256, "out": 16, "long_out": 144, "spin": "true", "profile": "",
            "method": "grid", "cpu_confine": "start"}
METHODS = ("grid", "lockstep")
PING_S = 0.25   # a spinning neighbour's request interval: well inside the engine's spin time, a 2% duty


def _serve(path: str, engine_args: dict, env: dict, barrier, counts: list[int], prompt: int, outs: list[int], q,
           role: str = "serve", done=None) -> None:
    """One engine in its own process: load, then for each request count wait for the others and time
    each batch of `outs` (serving seconds per count), setting done[i] after count i. role="spin": an
    engine kept spinning instead, by one 1-token request every PING_S until the server is done."""
    os.environ.update(env)
    from mosaic.backends.vllm.worker import start_engine, shutdown_engine, isolate_from_script_dir

    isolate_from_script_dir()
    from vllm import SamplingParams

    t = time.perf_counter()
    engine = start_engine(path, engine_args)
    load = time.perf_counter() - t
    serve: dict[int, list[float]] = {}
    for k, n_requests in enumerate(counts):
        barrier.wait(timeout=900)
        if role == "spin":
            ping = 0
            while not done[k].wait(timeout=PING_S):
                ping += 1
                engine.add_request(f"n{n_requests}p{ping}", {"prompt_token_ids": prompt_ids(f"p{ping}", prompt)},
                                   SamplingParams(max_tokens=1))
                while engine.has_unfinished_requests():
                    engine.step()
            continue
        serve[n_requests] = []
        for b, out in enumerate(outs):
            t = time.perf_counter()
            for i in range(n_requests):
                rid = f"n{n_requests}b{b}r{i}"
                engine.add_request(rid, {"prompt_token_ids": prompt_ids(rid, prompt)},
                                   SamplingParams(max_tokens=out, ignore_eos=True))
            while engine.has_unfinished_requests():
                engine.step()
            serve[n_requests].append(time.perf_counter() - t)
        if done is not None:
            done[k].set()
    shutdown_engine(engine)
    q.put({"load_s": load, "serve_s": serve, "role": role})


def step_scale(steps: dict[int, list[float]]) -> dict[int, float]:
    """busy workers -> median step time over the median at the most busy workers measured."""
    full = statistics.median(steps[max(steps)])
    return {b: round(statistics.median(s) / full, 3) for b, s in sorted(steps.items())}


def spread(values: list[float]) -> float:
    """Half the range over the median: the run-to-run noise of one busy count's step time."""
    return (max(values) - min(values)) / 2 / statistics.median(values)


def request_counts(cfg: dict) -> list[int]:
    """`requests=1,4,32`: the batch sizes measured, ascending, each >= 1."""
    raw = str(cfg["requests"]).strip().strip("[]")
    counts = []
    for part in raw.split(","):
        counts.append(int_option({"requests": part}, "requests", 1))
    if len(set(counts)) != len(counts):
        raise ConfigError(f"requests={cfg['requests']}: a count is listed twice; give each once")
    return sorted(counts)


def _round(path: str, args: dict, envs: list[dict], busy: int, cfg: dict, outs: list[int], spin: bool = False
           ) -> list[dict]:
    """One round: `busy` engines serving at once (worker 0 up); with `spin`, worker 0 serving beside
    a spinning engine on worker 1. The servers' results."""
    ctx = spawn_context()
    counts = request_counts(cfg)
    q, barrier = ctx.Queue(), ctx.Barrier(2 if spin else busy)
    done = [ctx.Event() for _ in counts] if spin else None
    roles = ["serve", "spin"] if spin else ["serve"] * busy
    procs = [ctx.Process(target=_serve, args=(path, args, envs[w], barrier, counts, int(cfg["prompt"]), outs, q,
                                              role, done)) for w, role in enumerate(roles)]
    for p in procs:
        p.start()
    got: list[dict] = []
    deadline = time.time() + 1800
    try:
        while len(got) < len(procs):
            try:
                got.append(q.get(timeout=2.0))
            except queue_mod.Empty:
                if any(p.exitcode not in (None, 0) for p in procs) or time.time() > deadline:
                    raise RuntimeError(f"measuring {path} with {busy} busy workers failed: an engine process "
                                       f"exited with {[p.exitcode for p in procs]} (see its log above)") from None
        return [r for r in got if r["role"] == "serve"]
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()


def _grid_round(path: str, args: dict, envs: list[dict], busy: int, grid: dict, prompt: int, spin: bool = False
                ) -> list[dict]:
    """The profiler's batches (mosaic/backends/vllm/probe.py, as profile_models and check_profile time them) on
    workers 0..busy-1 at once; with `spin`, on worker 0 beside an engine kept spinning on worker 1
    (loaded before worker 0 starts). measure()'s result per serving worker."""
    if not spin:
        return measure_on(path, args, envs[:busy], grid)
    ctx = spawn_context()
    q, barrier, done = ctx.Queue(), ctx.Barrier(2), [ctx.Event()]
    spinner = ctx.Process(target=_serve, args=(path, args, envs[1], barrier, [1], prompt, [1], q, "spin", done))
    spinner.start()
    try:
        try:
            barrier.wait(timeout=600)
        except threading.BrokenBarrierError:
            raise RuntimeError(f"measuring {path} beside a spinning engine failed: its engine did not start "
                               f"(exit code {spinner.exitcode}; see its log above)") from None
        return [measure(path, args, envs[0], grid)]
    finally:
        done[0].set()
        spinner.join(timeout=60)
        if spinner.is_alive():
            spinner.kill()


def _measured(method: str, path: str, args: dict, envs: list[dict], busy: int, cfg: dict, spin: bool
              ) -> list[tuple[dict[int, float], float]]:
    """One round of either method: per serving worker, (request count -> seconds per decode step,
    load seconds). grid: a batch's whole time over its output tokens (the profiler's timing, so the
    all-busy round is the profiled condition itself); lockstep: the slope of three batches (_round)."""
    counts, out, long_out, prompt = request_counts(cfg), int(cfg["out"]), int(cfg["long_out"]), int(cfg["prompt"])
    if method == "lockstep":
        return [({c: step_and_warmup(r["serve_s"][c], out, long_out)[0] for c in counts}, r["load_s"])
                for r in _round(path, args, envs, busy, cfg, [out, long_out, out], spin)]
    grid = {"repeats": 1, "batch_sizes": counts, "context_lengths": [prompt], "outputs": [long_out]}
    return [({int(row["cell"].split("x", 1)[0]): row["ms"] / 1e3 / long_out for row in r["steps"]}, r["load_time_s"])
            for r in _grid_round(path, args, envs, busy, grid, prompt, spin)]


def measure_contention(cfg: dict) -> dict[str, Any]:
    """The `engine.host_contention` block (options: DEFAULTS)."""
    n = int_option(cfg, "n_workers", 1)
    out, long_out = int_option(cfg, "out", 1), int_option(cfg, "long_out", 2)
    if n < 2:
        raise ConfigError(f"n_workers must be >= 2 (got {n}): contention needs a second worker on the host")
    if not out < long_out:
        raise ConfigError(f"need 0 < out < long_out (got out={out}, long_out={long_out})")
    for key in ("repeats", "prompt"):
        int_option(cfg, key, 1)
    counts = request_counts(cfg)
    spin = bool_option(cfg, "spin")
    method = str(cfg["method"])
    if method not in METHODS:
        raise ConfigError(f"method={method}: give grid (the profiler's own batches, with the other workers idle or "
                          "busy) or lockstep (engines serving the same batches in lockstep)")
    device_option(cfg["device"], n)
    if cfg["profile"]:   # the file the block goes into: checked before the minutes of measuring
        profile_file(cfg["profile"])
    registry = models_option(cfg)
    names = (sorted(registry.models) if cfg["model"] == "all"
             else [m.strip() for m in str(cfg["model"]).split(",") if m.strip()])
    if not names:   # was a StatisticsError after the spin measurement
        raise ConfigError(f"model={cfg['model']!r} names no model: give model=all or e.g. model=Qwen,GLM")
    for name in names:
        registry.resolve(name)
    registry.check_local_paths()
    registry.check_hub_models(only=set(names))   # one line now, not engines failing to start
    envs = device_env(n, cfg["device"], 1, str(cfg["cpu_confine"]))
    # model -> request count -> busy count -> decode step seconds over the repeats
    per_model: dict[str, dict[int, dict[int, list[float]]]] = {}
    per_model_loads: dict[str, dict[int, list[float]]] = {}
    spinning: dict[str, dict[int, list[float]]] = {}   # model -> count -> step beside a spinning engine
    for name in names:
        path, args = registry.resolve(name)
        steps: dict[int, dict[int, list[float]]] = {c: {b: [] for b in range(1, n + 1)} for c in counts}
        loads: dict[int, list[float]] = {b: [] for b in range(1, n + 1)}
        spun = spinning.setdefault(name, {c: [] for c in counts})
        for _ in range(int(cfg["repeats"])):
            for busy in [*range(1, n + 1), *(["spin"] if spin else [])]:
                got = _measured(method, path, args, envs, 1 if busy == "spin" else busy, cfg, busy == "spin")
                for by_count, load in got:
                    for c in counts:
                        (spun[c] if busy == "spin" else steps[c][busy]).append(by_count[c])
                    if busy != "spin":
                        loads[busy].append(load)
                last = spun if busy == "spin" else {c: steps[c][busy] for c in counts}
                print(f"{name}, {busy}{'' if busy == 'spin' else ' busy'}: step "
                      + ", ".join(f"{last[c][-1] * 1e3:.2f} ms at {c}" for c in counts)
                      + f", load {got[-1][1]:.1f} s", flush=True)
        if min(min(s) for by_busy in steps.values() for s in by_busy.values()) <= 0:
            raise ConfigError(f"{name}: step times are not positive: the machine is too noisy; rerun it idle or "
                              f"raise long_out (now {long_out})")
        per_model[name], per_model_loads[name] = steps, loads
    top = counts[-1]
    scales = {name: step_scale(s[top]) for name, s in per_model.items()}
    # Per model (a step's fixed host-side cost weighs more in a small model's step), and the median
    # over them for models not measured.
    scale = {b: round(statistics.median(s[b] for s in scales.values()), 3) for b in range(1, n + 1)}
    detail = "; ".join(
        f"{name} " + ", ".join(f"{b} busy {statistics.median(v) * 1e3:.1f} ms ±{spread(v):.0%}"
                               for b, v in s[top].items())
        for name, s in per_model.items())
    load_detail = ", ".join(f"{b} loading {statistics.median(x for v in per_model_loads.values() for x in v[b]):.1f} s"
                            for b in range(1, n + 1))
    # Loads (engine start-up with dummy weights: CPU work) pooled over models: one host property.
    load_scales = [step_scale(v) for v in per_model_loads.values()]
    load_scale = {b: round(statistics.median(s[b] for s in load_scales), 3) for b in range(1, n + 1)}
    block: dict[str, Any] = {"step_scale": scale, "models": scales, "load_scale": load_scale,
                             "idle_spin_s": engine_idle_spin_s()}
    spin_detail = ""
    if spin:
        # A spinning neighbour as a share of a busy one: (beside it - alone) / (beside a busy one - alone)
        # per model and count (medians over the repeats), the median over them: one host property.
        shares = []
        for name, s in per_model.items():
            for c in counts:
                alone, busy2 = statistics.median(s[c][1]), statistics.median(s[c][2])
                if busy2 > alone:
                    shares.append((statistics.median(spinning[name][c]) - alone) / (busy2 - alone))
        block["spin_weight"] = round(min(1.0, max(0.0, statistics.median(shares))), 3) if shares else 1.0
        spin_detail = (f"; spin_weight: worker 0's steps beside an engine kept spinning on worker 1 (a 1-token request "
                       f"every {PING_S} s), relative to alone and beside a serving one, median of {len(shares)} model x "
                       f"count shares (range {min(shares):.2f} to {max(shares):.2f})" if shares else "")
    if len(counts) > 1:
        block["by_batch"] = {name: {c: step_scale(s[c]) for c in counts} for name, s in per_model.items()}
        detail += "; at " + ", ".join(
            f"{c} requests: " + ", ".join(f"{name} {'/'.join(f'{statistics.median(v) * 1e3:.1f}' for v in s[c].values())}"
                                          f" ms" for name, s in per_model.items()) for c in counts[:-1])
    if cfg["profile"] and method == "lockstep":
        ratios = against_profile(per_model, str(profile_file(cfg["profile"])), int(cfg["prompt"]), out, long_out)
        if ratios:
            detail += "; against the profile's step model for the same batch (measured / predicted, " + ", ".join(
                f"{b} busy" for b in range(1, n + 1)) + "): " + "; ".join(
                f"{name} " + ", ".join(f"{'/'.join(f'{r:.2f}' for r in by_busy.values())} at {c}"
                                       for c, by_busy in by_count.items())
                for name, by_count in ratios.items())
            off = sorted({f"{name} at {c}: {by_busy[n]:.2f}x" for name, by_count in ratios.items()
                          for c, by_busy in by_count.items() if abs(by_busy[n] - 1) > ALL_BUSY_TOLERANCE})
            if off:
                print(f"warning: with all {n} workers busy these steps are not the profile's ({', '.join(off)} its "
                      "step model), so the factors, relative to them, are not relative to the profiled condition "
                      "(method=grid measures against the profiler's own condition)", flush=True)
    how = (f"the profiler's own batches (mosaic/backends/vllm/probe.py: {', '.join(map(str, counts))} requests of {cfg['prompt']} "
           f"tokens x {long_out} output tokens, each timed whole) on workers 0..b-1 at once, the others idle; "
           f"time per output token" if method == "grid" else
           f"engines serving in lockstep (a barrier before each batch): {', '.join(map(str, counts))} requests of "
           f"{cfg['prompt']} tokens x {out} / {long_out} / {out} output tokens per engine; decode step")
    block["source"] = (f"measured by experiments/profile_contention.py method={method} ({time.strftime('%Y-%m-%d')}, "
                       f"{cfg['device']}, {n} workers): {cfg['repeats']} interleaved rounds per busy count of {how}, "
                       f"median by busy count (±half range), at {top} requests: {detail}; median load over the "
                       f"models: {load_detail}; idle_spin_s: the installed vLLM's SpinCondition busy_loop_s (an idle "
                       f"engine's model-runner process spins that long before it waits on a socket){spin_detail}")
    return block


ALL_BUSY_TOLERANCE = 0.10   # as check_profile's: the all-busy steps should be the profiled ones


def against_profile(per_model: dict[str, dict[int, dict[int, list[float]]]], profile: str, prompt: int, out: int,
                    long_out: int) -> dict[str, dict[int, dict[int, float]]]:
    """Each measured median step (model -> requests -> busy count -> seconds) over what the profile's
    step model predicts for that batch: every request decoding, at the mean context of the steps the
    slope spans (prompt + (out + long_out) / 2). The factors are ratios to the all-busy column, which
    is only the profiled condition where that column is about 1; models the profile lacks are left out."""
    from mosaic.profiles import load_profiles
    from mosaic.engine import CostModel

    profiles = load_profiles(profile)
    ctx = prompt + (out + long_out) / 2
    ratios: dict[str, dict[int, dict[int, float]]] = {}
    for name, by_count in per_model.items():
        if name not in profiles.models:
            continue
        model = CostModel(profiles.model(name), profiles.engine)
        ratios[name] = {c: {b: round(statistics.median(v) / model.step_s(c, c, round(c * ctx), 0.0), 3)
                            for b, v in by_busy.items()}
                        for c, by_busy in by_count.items()}
    return ratios


def engine_idle_spin_s() -> float:
    """How long an engine left without requests keeps spinning, as the installed vLLM has it: its
    multiprocess executor's model-runner process reads the next step from a shared-memory queue and
    busy-loops (sched_yield) for SpinCondition's busy_loop_s after its last read, taking CPU from
    the host's other engines meanwhile (an agent graph's engines idle between requests). 0 where this
    vLLM has no such reader."""
    import inspect

    try:
        from vllm.distributed.device_communicators.shm_broadcast import SpinCondition
    except ImportError:
        return 0.0
    param = inspect.signature(SpinCondition.__init__).parameters.get("busy_loop_s")
    return float(param.default) if param is not None and isinstance(param.default, (int, float)) else 0.0


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
