"""Measure models on the real engine and write a profile file backend=sim can use.

    python experiments/profile.py model=LlamaR1            # one model of models=tiny
    python experiments/profile.py model=all out=mosaic/profiles/data/tiny_cpu.yaml
"""
import sys
from pathlib import Path

# This script is named like the standard library's `profile` module (the name the issue gives it);
# keep its folder off sys.path so nothing in this process imports it by mistake.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import socket  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import hydra  # noqa: E402
import yaml  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from mosaic.core.errors import ConfigError  # noqa: E402
from mosaic.profiles import load_profiles, parse_profiles  # noqa: E402
from vllm_backend.backend import device_env  # noqa: E402
from vllm_backend.models import ModelRegistry  # noqa: E402
from vllm_backend.profiler import fit, fit_error, fit_sessions, measure, model_entry  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def model_grid(cfg: dict, registry: ModelRegistry, name: str, base: dict) -> dict:
    """The measurement grid for one model, plus what its session sweep needs (its output lengths)."""
    grid = dict(cfg["grid"], session_sweep=cfg.get("session_sweep") or {})
    kind = registry.models[name].get("kind", "instruct")
    return dict(grid, session_output=cfg["output"][kind], length_shapes=base["length_shapes"])


def profile(cfg: dict) -> Path:
    base = yaml.safe_load((ROOT / "mosaic" / "data" / "moa6_a100.yaml").read_text())
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
        import concurrent.futures as cf
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
        "sources": [f"measured by experiments/profile.py ({when})"]}
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
    out.write_text("# Written by experiments/profile.py; rerun it to refresh.\n" + yaml.safe_dump(doc, sort_keys=False))
    load_profiles(str(out))
    return out


@hydra.main(version_base="1.3", config_path="../conf", config_name="profile")
def main(cfg: DictConfig) -> None:
    try:
        out = profile(OmegaConf.to_container(cfg, resolve=True))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
