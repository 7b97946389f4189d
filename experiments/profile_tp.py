"""Measure an engine's tensor-parallel scaling: the same requests on one model at TP=1 and TP=N.

Prints the `engine.tensor_parallel` block for a profile file. Each engine serves three batches of
the same requests in turn: `out` tokens (its first batch, which also pays the engine's one-off
warm-up), `long_out` tokens, then `out` tokens again. The step time is the slope between the last
two, so a warm-up that a short batch would mistake for slow steps is kept apart:
step_speedup[N] = TP=1 step time / TP=N step time, and load_overhead_s = TP=N (start-up + warm-up)
minus TP=1 (start-up + warm-up), medians of the repeats. Each engine runs in its own process, as the
vLLM backend runs them.

    python experiments/profile_tp.py                 # CPU: tiny Qwen, TP=2, 3 repeats
    python experiments/profile_tp.py model=Exaone tp=4 device=cuda models=paper repeats=2
"""
from __future__ import annotations

import json
import multiprocessing as mp
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _serve(path: str, engine_args: dict, env: dict, n_requests: int, prompt: int, outs: list[int], q) -> None:
    import os

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


def measure(cfg: dict) -> dict:
    import yaml

    from vllm_backend.backend import device_env, tp_env
    from vllm_backend.models import ModelRegistry

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
            p = ctx.Process(target=_serve, args=(path, engine_args, env, int(cfg["requests"]), int(cfg["prompt"]),
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


if __name__ == "__main__":
    cfg = {"models": "tiny", "model": "Qwen", "tp": 2, "device": "cpu", "repeats": 3, "requests": 8,
           "prompt": 36, "out": 16, "long_out": 144}
    for a in sys.argv[1:]:
        k, _, v = a.partition("=")
        if k not in cfg:
            sys.exit(f"unknown option {k}; options: {', '.join(cfg)}")
        cfg[k] = v
    print(json.dumps({"tensor_parallel": measure(cfg)}, indent=2))
