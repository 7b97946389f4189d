"""Does a profile still describe this machine? Re-measure a few of its own batches and compare.

A profile's step costs are only as good as the machine state they were measured on: on the shared
CPU hosts here the same batches ran 20-30% faster one day than the day before, and 2-3x slower on
another host, so a fidelity comparison against a stale profile measures the drift, not the simulator.
This check runs a small grid of the profiler's own batches (n prompts of a length, each generating
1 or 49 tokens; mosaic/backends/vllm/probe.py times them for the profiler and the check alike, on every
worker at once as the profile was) and compares each batch's time with what the profile's fitted step model predicts
for exactly the steps the engine took (the V1 replica gives them). Also compared: load time, KV
capacity, block size, token budget and scheduling mode as the engine reports them.

Per model: the median of measured / predicted over all batches and workers (1.0 = the profile
describes the machine), its spread (half the range of the per-repeat medians, relative), and the
verdict: the profile matches when every model's median ratio is within `tolerance` of 1 and its
engine settings agree; otherwise it names the command that re-profiles.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mosaic.core.errors import ConfigError
from mosaic.core.progress import bar
from mosaic.backends.vllm import probe
from mosaic.fitting.real_engine import ROOT
from mosaic.profiles.calibration import measured_model
from mosaic.profiles import load_profiles
from mosaic.profiles.loader import profile_path
from mosaic.fitting.options import device_option, grid_option
from mosaic.backends.vllm.backend import device_env
from mosaic.backends.vllm.models import ModelRegistry


def _profile_path(profile: str) -> Path:
    """A bundled profile's name (tiny_cpu, as workload.profiles names it) or a file's path, relative
    paths from the repository; which is which, as workload.profiles decides it (profile_path)."""
    p = Path(profile)
    p = p if p.is_absolute() or not p.parts else ROOT / p
    if profile and p.is_dir():
        raise ConfigError(f"profile={profile} is a directory; name the profile file to check, e.g. "
                          "profile=mosaic/profiles/data/tiny_cpu.yaml")
    if profile:
        try:
            return profile_path(str(p) if p.is_file() else profile)
        except ConfigError:
            pass
    raise ConfigError(f"profile={profile}: no such file; name the profile file to check, e.g. "
                      "profile=mosaic/profiles/data/tiny_cpu.yaml (or a bundled name: tiny_cpu)")


def model_names(cfg: dict[str, Any], registry: ModelRegistry, profiled: set[str]) -> list[str]:
    """The models to check: `model` (a name, a comma list, or all = every registry model the profile has)."""
    spec = cfg.get("model") or "all"
    # Hydra reads model=A,B as a sweep: the command line gives a list, model=[A,B]
    spec = ",".join(map(str, spec)) if isinstance(spec, (list, tuple)) else str(spec)
    if spec == "all":
        names = sorted(set(registry.models) & profiled)
        if not names:
            raise ConfigError(f"model=all: no model of the registry ({', '.join(sorted(registry.models))}) is in the "
                              f"profile ({', '.join(sorted(profiled))}); name the registry that was profiled")
        return names
    names = [m.strip() for m in spec.split(",") if m.strip()]
    for n in names:
        if n not in profiled:
            raise ConfigError(f"model={n}: not in the profile (it has {', '.join(sorted(profiled))})")
        registry.resolve(n)   # an unknown registry model: its own clear error, before anything starts
    return names


def engine_differences(measured: dict[str, Any], model: Any, engine: Any) -> list[str]:
    """Engine settings the profile recorded that this machine's engine does not have."""
    out = []
    kv = measured["kv_blocks"] * measured["block_size"]
    if model.kv_capacity and kv != model.kv_capacity:
        out.append(f"KV capacity {kv} tokens (profile: {model.kv_capacity})")
    for key, label in (("block_size", "block size"), ("max_num_batched_tokens", "token budget"),
                       ("scheduling", "scheduling"), ("cpu_confine", "backend.options.cpu_confine")):
        have, want = measured.get(key), getattr(engine, key, None)
        if want is not None and have is not None and have != want:
            out.append(f"{label} {have} (profile: {want})")
    return out


def verdict(models: dict[str, dict[str, Any]], tolerance: float) -> tuple[bool, list[str]]:
    """Whether the profile describes the machine, and why not (one reason per model)."""
    why = []
    for name, m in models.items():
        if abs(m["ratio"] - 1) > tolerance:
            why.append(f"{name}: batches take {m['ratio']:.2f}x the profile's prediction (tolerance ±{tolerance:.0%})")
        if m["engine"]:
            why.append(f"{name}: the engine differs: {'; '.join(m['engine'])}")
    return not why, why


def check_profile(cfg: dict[str, Any]) -> dict[str, Any]:
    """Measure the probe grid for each model and compare it with the profile (options:
    mosaic/conf/check_profile.yaml). Returns {profile, when, tolerance, models: {name: {ratio, spread,
    cells, load_s, profile_load_s, engine}}, matches, reasons}."""
    tol = cfg.get("tolerance")
    if not isinstance(tol, (int, float)) or isinstance(tol, bool) or not 0 < tol < 10:
        raise ConfigError(f"tolerance must be a fraction > 0, e.g. 0.1 for ±10% (got {tol!r})")
    n = cfg.get("n_workers")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ConfigError(f"n_workers must be an integer >= 1 (got {n!r}): as many workers as the profile was "
                          "measured on (its profiler's n_workers)")
    busy = cfg.get("busy")
    busy = n if busy is None else busy
    if not isinstance(busy, int) or isinstance(busy, bool) or not 1 <= busy <= n:
        raise ConfigError(f"busy must be an integer from 1 to n_workers={n} (got {busy!r}): how many of the workers "
                          "serve the batches at once (the others idle), n_workers as the profile was measured")
    path = _profile_path(str(cfg.get("profile") or ""))
    profiles = load_profiles(str(path))
    registry = ModelRegistry(cfg["models"])
    names = model_names(cfg, registry, set(profiles.models))
    for name in names:
        if not profiles.models[name].cost:
            raise ConfigError(f"model {name} in {path.name} has no measured step cost (`cost`): only profiles "
                              "written by experiments/profile_models.py can be checked against the machine")
    grid = grid_option(cfg["grid"], registry.max_model_len)
    device_option(cfg["backend"]["options"].get("device", "auto"), n)
    if not probe.grid_cells(grid):
        raise ConfigError("grid: no batches to measure; give batch_sizes, context_lengths and outputs, prefill or decode")
    opts = cfg["backend"]["options"]
    confine = opts.get("cpu_confine", "start")
    envs = device_env(n, opts.get("device", "auto"), opts.get("kv_cache_gib", 1), confine)
    split = cfg.get("split", False)
    if not isinstance(split, bool):
        raise ConfigError(f"split must be true or false (got {split!r}): true measures each model on one worker, "
                          "the workers measuring different models at once")
    models: dict[str, dict[str, Any]] = {}
    batches = grid["repeats"] * len(probe.grid_cells(grid))
    if split:
        with bar(len(names) * batches, f"calibrating {len(names)} models on {busy} workers", unit="batch") as b:
            split_measured = probe.measure_split(
                {n: registry.resolve(n) for n in names}, envs[:busy], grid, lambda: b.update(1),
                probe.expected_times(profiles, names, grid))
    for name in names:
        if split:
            measured = split_measured[name]
        else:
            # Workers 0..busy-1 with the cores n_workers would give them: busy < n_workers measures the
            # same batches with the rest of the host idle (how much faster a worker steps alone).
            with bar(busy * batches, f"checking {name}", unit="batch") as b:
                measured = probe.merge_workers(probe.measure_on(*registry.resolve(name), envs[:busy], grid,
                                                                lambda: b.update(1)))
        measured["cpu_confine"] = confine   # compared with the profile's as the engine's settings are
        prof = profiles.models[name]
        # the comparison, what a calibrated profile takes from this machine (mosaic/profiles/calibration.py)
        # and the timed batches, so that a calibration can be fitted again from the check alone
        models[name] = {**measured_model(measured, prof.cost, prof.load_time_s),
                        "engine": engine_differences(measured, prof, profiles.engine)}
        print(f"{name}: batches {models[name]['ratio']:.2f}x the profile's prediction "
              f"(±{models[name]['spread']:.0%} over repeats{_by_kind(models[name])}), load "
              f"{measured['load_time_s']:.1f} s (profile {prof.load_time_s:.1f} s)", flush=True)
    ok, why = verdict(models, float(tol))
    return {"profile": str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path),
            "when": time.strftime("%Y-%m-%d %H:%M"), "tolerance": float(tol), "n_workers": n, "busy": busy,
            "cpu_confine": confine, "models": models,
            "matches": ok, "reasons": why}


def _by_kind(m: dict[str, Any]) -> str:
    """`; decode 0.98x, mixed 0.93x` where a check timed more than one kind of batch, and
    `; worker 0 0.95x, worker 1 1.04x` where it measured on more than one worker."""
    kinds, workers = m.get("kinds", {}), m.get("workers", {})
    return ("; " + ", ".join(f"{k} {x:.2f}x" for k, x in kinds.items()) if len(kinds) > 1 else "") + (
        "; " + ", ".join(f"worker {w} {x:.2f}x" for w, x in workers.items()) if len(workers) > 1 else "")


def report(result: dict[str, Any]) -> str:
    """The check as a few lines of Markdown (also the fidelity table's header note)."""
    n, busy = result.get("n_workers"), result.get("busy")
    alone = f", {busy} of {n} workers busy (the rest idle)" if busy is not None and busy != n else ""
    lines = [f"Profile check ({result['when']}, `{result['profile']}`{alone}): measured / predicted time of the "
             "profiler's own batches on this machine, median over batches and workers (±spread over repeats):", ""]
    lines += [f"- {name}: {m['ratio']:.2f}x (±{m['spread']:.0%}{_by_kind(m)}); load {m['load_s']:.1f} s against "
              f"{m['profile_load_s']:.1f} s" + (f"; engine differs: {'; '.join(m['engine'])}" if m["engine"] else "")
              for name, m in result["models"].items()]
    if result["matches"]:
        lines += ["", f"The profile describes this machine within ±{result['tolerance']:.0%}."]
    else:
        names = list(result["models"])
        which = names[0] if len(names) == 1 else "all"
        # measured the way the checked runs are confined, or the new profile differs as the old one did
        confine = (f" backend.options.cpu_confine={result['cpu_confine']}"
                   if result.get("cpu_confine", "start") != "start" else "")
        lines += ["", f"The profile does NOT describe this machine (tolerance ±{result['tolerance']:.0%}): "
                  + "; ".join(result["reasons"]) + ". A comparison against it measures the drift as well as "
                  f"the simulator. Re-profile: `python experiments/profile_models.py model={which} "
                  f"out={result['profile']}{confine}`."]
    return "\n".join(lines) + "\n"


def probe_settings(models: dict[str, Any], backend_options: dict[str, Any], profile: str, names: list[str],
                   n_workers: int, config: str = "check_profile") -> dict[str, Any]:
    """check_profile's options for a run's own registry, backend options and profile (the fidelity
    suite checks the profile it compares against), the rest from mosaic/conf/`config`.yaml
    (check_profile, or calibrate_profile for the calibration's batches). Every worker measures each
    model (split off), so that each session's worker has its own ratio."""
    from omegaconf import OmegaConf

    from mosaic.run.builder import compose

    cfg = OmegaConf.to_container(compose([], config), resolve=True)
    return {**cfg, "models": models, "backend": {**cfg["backend"], "options": backend_options},
            "profile": profile, "model": ",".join(names), "n_workers": n_workers, "split": False}
