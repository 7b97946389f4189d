"""Time a few of the profiler's batches on this machine's real engines (the measuring half of
profiling, profile checks and calibration; the fitting is mosaic/fitting/real_engine.py's and
mosaic/profiles/calibration.py's).

Each worker's models are measured in one process bound to that worker's devices, in the process
layout real runs use (mosaic/backends/vllm/worker.py: a worker serves its models in turn), so the
timings include the contention of a busy host: worker start-up (importing the engine runtime), then
per model its load time, the KV cache in blocks and the block size as the engine sized them, its
scheduling mode, a first request's one-off warm-up, and each grid cell's batch (n prompts submitted
at once, timed until the last finishes) `repeats` times, and unload time. A batch's steps come from
the V1 replica (mosaic/engine/v1.py), so every timed window is an exact sum of step-model terms.
"""
from __future__ import annotations

import concurrent.futures as cf
import os
import queue as queue_mod
import statistics
import time
from typing import Any, Callable, NamedTuple

import numpy as np

from mosaic.backends.vllm.backend import prompt_ids
from mosaic.backends.vllm.procgroup import DEFAULT_GRACE_S, end_processes, group_leader_entry, spawn_context
from mosaic.profiles.calibration import FIT_TERMS, predict_ms

WARM = (64, 8)   # the warm-up request: prompt and output tokens


def window_terms(shape: list[tuple[int, int, int, float]]) -> dict[str, float]:
    """FIT_TERMS of a window whose steps are `shape` (from _replica_steps)."""
    return {"steps": float(len(shape)),
            **{k: float(sum(step[i] for step in shape)) for i, k in enumerate(FIT_TERMS[1:])}}


def _replica_steps(requests: list[tuple[str, int, int]], block_size: int, kv_blocks: int, max_num_seqs: int,
                   budget: int) -> list[tuple[int, int, int, float]]:
    """(sequences, tokens, decode context, prefill attention) of each step the engine takes for
    `requests` submitted at once: mosaic/engine/v1.py schedules exactly as vLLM V1 does
    (tests/mosaic/backends/vllm/test_v1_schedule.py), so a batch's step composition is known without
    instrumenting the engine."""
    from mosaic.engine.v1 import V1Engine

    class Shape:
        def step_s(self, tokens, n_seqs, decode_ctx, attn):
            rows.append((n_seqs, tokens, decode_ctx, attn))
            return 1.0

        def decode_run_s(self, n_seqs, ctx_sum, steps):
            for k in range(steps):
                rows.append((n_seqs, n_seqs, ctx_sum + n_seqs * k, 0.0))
            return float(steps)

    rows: list[tuple[int, int, int, float]] = []
    eng = V1Engine(Shape(), kv_blocks - 1, block_size, max_num_seqs, budget)
    for _ in eng.run(requests, lambda: 0.0):
        pass
    return rows


class Cell(NamedTuple):
    """One measured batch: `requests` (prompt, output tokens) submitted at once and timed as a whole."""
    label: str
    kind: str   # decode, prefill (1 output token each) or mixed (lengths drawn from ranges)
    requests: tuple[tuple[int, int], ...]


def grid_cells(grid: dict[str, Any]) -> list[Cell]:
    """The measured batches, each timed `repeats` times. Uniform cells are n prompts of one length
    with one output length; a mixed cell draws its lengths uniformly from its ranges, seeded by the
    grid's `seed` and the cell's place, so every repeat, worker and machine times the same batch."""
    def uniform(n: int, length: int, out: int) -> Cell:
        return Cell(f"{n}x{length}->{out}", "decode" if out > 1 else "prefill", ((length, out),) * n)

    cells = ([uniform(n, length, out) for n in grid.get("batch_sizes", []) for length in grid.get("context_lengths", [])
              for out in grid.get("outputs", [])] + [uniform(n, length, 1) for n, length in grid.get("prefill", [])]
             + [uniform(n, length, out) for n, length, out in grid.get("decode", [])])
    for j, (n, plo, phi, olo, ohi) in enumerate(grid.get("mixed", [])):
        rng = np.random.default_rng([int(grid.get("seed", 0)), j])
        prompts, outs = rng.integers(plo, phi + 1, n), rng.integers(olo, ohi + 1, n)
        cells.append(Cell(f"{n}x{plo}-{phi}->{olo}-{ohi}", "mixed",
                          tuple((int(p), int(o)) for p, o in zip(prompts, outs))))
    return cells


def cell_terms(cell: Cell, block_size: int, kv_blocks: int, max_num_seqs: int, budget: int) -> dict[str, float]:
    """FIT_TERMS of the window an engine of these settings steps through for `cell`."""
    return window_terms(_replica_steps([(str(i), p, o) for i, (p, o) in enumerate(cell.requests)], block_size,
                                       kv_blocks, max_num_seqs, budget))


# What else to measure on a model's engine before it shuts down: (engine, grid) -> its `sessions`
# (the profiler's session sweep). A module-level function, so that it reaches the worker process.
After = Callable[[Any, dict[str, Any]], list[dict[str, float]]]


def _measure_engine(path: str, engine_args: dict[str, Any], grid: dict[str, Any], after: After | None,
                    queue) -> dict[str, Any]:
    """One model's engine in this (worker) process: started, timed on the grid, `after` it, shut
    down. Rows of `steps`: {kind, cell, rep, steps, seqs, tokens, ctx, attn, ms}, sums over `steps`
    engine steps."""
    from vllm import SamplingParams

    from mosaic.backends.vllm.worker import shutdown_engine, start_engine

    t0 = time.time()
    engine = start_engine(path, engine_args)
    load = time.time() - t0
    cache = engine.vllm_config.cache_config
    sched = engine.vllm_config.scheduler_config
    blocks, block_size = int(cache.num_gpu_blocks), int(cache.block_size)
    budget, max_seqs = int(sched.max_num_batched_tokens), int(sched.max_num_seqs)
    hf = engine.vllm_config.model_config.hf_config
    arch = {k: getattr(hf, k, None) for k in ("num_hidden_layers", "hidden_size", "num_key_value_heads",
                                               "num_attention_heads", "intermediate_size", "vocab_size")}
    arch["head_dim"] = getattr(hf, "head_dim", None) or hf.hidden_size // hf.num_attention_heads
    rows: list[dict[str, Any]] = []
    uid = iter(range(10**9))

    def submit(prompt: int, out: int) -> str:
        rid = f"m{next(uid)}"
        engine.add_request(rid, {"prompt_token_ids": prompt_ids(rid, prompt)},
                           SamplingParams(max_tokens=out, ignore_eos=True))
        return rid

    # A fresh engine's first request pays one-off costs (first-call set-up in the client and the
    # engine core): timed here, and what the step model does not explain is the session's warm-up.
    t = time.perf_counter()
    engine.add_request("warm", {"prompt_token_ids": prompt_ids("warm", WARM[0])},
                       SamplingParams(max_tokens=WARM[1], ignore_eos=True))
    while engine.has_unfinished_requests():
        engine.step()
    warm = {**window_terms(_replica_steps([("warm", *WARM)], block_size, blocks, max_seqs, budget)),
            "ms": (time.perf_counter() - t) * 1e3}
    # Each cell: n prompts of `length`, `out` tokens each, submitted at once to the idle engine and
    # timed until the last finishes. Only whole windows are timed: with the engine core in its own
    # process a single step() can return an output the core computed earlier. The window's steps
    # come from the V1 replica, so every row is an exact sum of step-model terms.
    submits: list[tuple[float, int]] = []   # (ms per add_request, n) of each cell
    cells = [(cell, cell_terms(cell, block_size, blocks, max_seqs, budget)) for cell in grid_cells(grid)]
    for rep in range(grid["repeats"]):
        for cell, terms in cells:
            t = time.perf_counter()
            for length, out in cell.requests:
                submit(length, out)
            submits.append(((time.perf_counter() - t) * 1e3 / len(cell.requests), len(cell.requests)))
            while engine.has_unfinished_requests():
                engine.step()
            ms = (time.perf_counter() - t) * 1e3
            rows.append({"kind": cell.kind, "cell": cell.label, "rep": rep, **terms, "ms": ms})
            queue.put({"progress": 1})
    sessions = after(engine, grid) if after is not None else []
    t0 = time.time()
    shutdown_engine(engine)
    unload = time.time() - t0
    import vllm.envs as vllm_envs

    return {"load_time_s": load, "unload_time_s": unload,
            "kv_capacity": blocks * block_size, "kv_blocks": blocks,
            "block_size": block_size, "prefix_caching": bool(cache.enable_prefix_caching),
            # vLLM before 0.11 ran V0 unless VLLM_USE_V1 said otherwise; later versions are V1 only.
            "scheduling": "v0" if getattr(vllm_envs, "VLLM_USE_V1", True) is False else "v1",
            "max_num_batched_tokens": budget, "arch": arch, "steps": rows, "sessions": sessions, "warm": warm,
            # per request, while the engine steps on what has arrived (cells of >= 4 requests)
            "submit_ms": float(np.median([ms for ms, n in submits if n >= 4] or [ms for ms, _ in submits]))}


def _measure_models(models: list[tuple[str, dict[str, Any]]], env: dict[str, str], grid: dict[str, Any],
                    after: After | None, spawned_at: float, queue) -> None:
    """Worker process: each (path, engine args) of `models` in turn, one message with their results.
    The worker's start-up is paid once, as in a run, and recorded with each model: from the parent's
    spawning it (`spawned_at`, wall clock) to the engine runtime imported, the span a run's worker
    takes before its first load (mosaic/backends/vllm/worker.py: run_session's first import)."""
    os.environ.update(env)
    from mosaic.backends.vllm.worker import isolate_from_script_dir

    isolate_from_script_dir()
    from vllm import SamplingParams  # noqa: F401 - the import a run's worker makes before its first load

    startup = time.time() - spawned_at
    queue.put({"results": [{"startup_s": startup, **_measure_engine(path, args, grid, after, queue)} for path, args in models]})


def measure_models(models: list[tuple[str, dict[str, Any]]], env: dict[str, str], grid: dict[str, Any],
                   timeout_s: float = 900, on_progress: Callable[[], None] | None = None,
                   after: After | None = None) -> list[dict[str, Any]]:
    """Each (path, engine args) of `models` in turn on one worker's devices (one process, as a run's
    worker serves its models); on_progress() after each timed batch. Their results, in order."""
    what = f"profiling {', '.join(p for p, _ in models)}"
    return in_process(_measure_models, (models, env, grid, after, time.time()), what, timeout_s * len(models),
                      on_progress)["results"]


def measure(path: str, engine_args: dict[str, Any], env: dict[str, str], grid: dict[str, Any],
            timeout_s: float = 900, on_progress: Callable[[], None] | None = None,
            after: After | None = None) -> dict[str, Any]:
    """One model on one worker's devices (in its own process); on_progress() after each timed batch."""
    return measure_models([(path, engine_args)], env, grid, timeout_s, on_progress, after)[0]


def measure_on(path: str, engine_args: dict[str, Any], envs: list[dict[str, str]], grid: dict[str, Any],
               on_progress: Callable[[], None] | None = None, after: After | None = None) -> list[dict[str, Any]]:
    """measure() on every worker of `envs` at once (a thread each, each engine in its own process), as
    the profile is measured: the results in worker order."""
    with cf.ThreadPoolExecutor(len(envs)) as pool:
        futs = [pool.submit(measure, path, engine_args, env, grid, on_progress=on_progress, after=after)
                for env in envs]
        return [f.result() for f in futs]


def expected_s(model: Any, engine: Any, grid: dict[str, Any]) -> float:
    """Seconds the profile expects a model (a ModelProfile, of a profile whose engine is `engine`)
    to take on the grid: its load and unload, and each batch as its step model prices it."""
    kv_blocks = max(2, int(model.kv_capacity // engine.block_size))
    batches = sum(predict_ms(model.cost, cell_terms(cell, engine.block_size, kv_blocks, engine.max_num_seqs,
                                                    engine.max_num_batched_tokens)) for cell in grid_cells(grid))
    return model.load_time_s + model.unload_time_s + grid["repeats"] * batches / 1e3


def expected_times(profiles: Any, names: list[str], grid: dict[str, Any]) -> dict[str, float]:
    """expected_s of each named model of a profile set (measure_split's `expected`)."""
    return {n: expected_s(profiles.models[n], profiles.engine, grid) for n in names}


def measure_split(models: dict[str, tuple[str, dict[str, Any]]], envs: list[dict[str, str]], grid: dict[str, Any],
                  on_progress: Callable[[], None] | None = None,
                  expected: dict[str, float] | None = None) -> dict[str, dict[str, Any]]:
    """Each model of `models` ({name: (path, engine args)}) on one worker, each worker's models
    measured in one process, the workers at once: as many times faster as there are workers, each
    still beside a busy neighbour except for a last model alone. With `expected` (seconds per
    model, expected_s) the longest goes first to the worker with the least so far, so that the
    workers finish together; else the models are dealt in turn. Per model, merge_workers of its one
    measurement; the rows keep the worker that timed them."""
    names = list(models)
    turns: dict[int, list[str]] = {w: [] for w in range(len(envs))}
    if expected is None:
        for i, name in enumerate(names):
            turns[i % len(envs)].append(name)
    else:
        load = [0.0] * len(envs)
        for name in sorted(names, key=lambda n: -expected[n]):
            w = min(range(len(envs)), key=lambda k: (load[k], k))
            turns[w].append(name)
            load[w] += expected[name]

    def work(w: int) -> dict[str, dict[str, Any]]:
        if not turns[w]:
            return {}
        results = measure_models([models[n] for n in turns[w]], envs[w], grid, on_progress=on_progress)
        return {n: {**merge_workers([m]), "steps": [dict(r, worker=w) for r in m["steps"]]}
                for n, m in zip(turns[w], results)}

    with cf.ThreadPoolExecutor(len(envs)) as pool:
        out = {k: v for part in pool.map(work, turns) for k, v in part.items()}
    return {n: out[n] for n in names}


def in_process(target: Callable[..., None], args: tuple, what: str, timeout_s: float,
               on_progress: Callable[[], None] | None = None) -> dict[str, Any]:
    """target(*args, queue) in a spawned process of its own group, ended with everything it started
    (EngineCore) however it ends; its one result message, or RuntimeError as soon as the process is
    gone without one (an engine that could not start: it waited out the timeout before, 900 s)."""
    ctx = spawn_context()
    q = ctx.Queue()
    p = ctx.Process(target=group_leader_entry, args=(DEFAULT_GRACE_S, target, *args, q))
    p.start()
    deadline = time.time() + timeout_s
    done = False
    try:
        while time.time() < deadline:
            try:
                result = q.get(timeout=2.0)
                if "progress" in result:
                    if on_progress is not None:
                        on_progress()
                    continue
                done = True
                return result
            except queue_mod.Empty:
                if not p.is_alive():
                    raise RuntimeError(f"{what} failed: the measuring process exited with code "
                                       f"{p.exitcode} (see its log above)") from None
        raise RuntimeError(f"{what} did not finish within {timeout_s:.0f} s")
    finally:
        end_processes([p], wait_s=60 if done else 0)


def merge_workers(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One model measured on every worker at once (so each saw the others' load, as in a run):
    all step rows, and the median of the one-off times."""
    first = results[0]
    med = {k: float(statistics.median(r[k] for r in results))
           for k in ("startup_s", "load_time_s", "unload_time_s", "submit_ms")}
    return {**first, **med, "workers": len(results), "warm": [r["warm"] for r in results],
            "steps": [dict(row, worker=w) for w, r in enumerate(results) for row in r["steps"]],
            "sessions": [x for r in results for x in r["sessions"]]}
