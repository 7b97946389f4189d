"""`workload.calibrate=true`: the run's profile calibrated to this machine before the run.

A few of the profiler's own batches per model the run serves (the calibration's, from
mosaic/conf/calibrate_profile.yaml) are timed on this machine's vLLM engines, each model on one
worker and the workers measuring different models at once (mosaic/backends/vllm/probe.py), and the
profile's step costs, load and start-up times are scaled by them (mosaic/profiles/calibration.py).
The planner, and the simulator where backend=sim, then price the run at this machine's speed.
`experiments/calibrate_profile.py` does the same once, into a file; here it is redone every run, so
a host that drifted since is measured as it is now. The calibrated profile is written into the run
folder (profile.calibrated.yaml) and summary.json's profile_calibration records what was scaled.
"""
from __future__ import annotations

import importlib.util
import logging
import time
from dataclasses import asdict
from typing import Any, Sequence

from mosaic.config import CONF_DIR
from mosaic.config.schema import MosaicConfig
from mosaic.core.errors import ConfigError
from mosaic.core.progress import bar
from mosaic.profiles import ProfileSet, parse_profiles
from mosaic.profiles.calibration import GROUPS, calibrated_file, measured_model
from mosaic.profiles.loader import profile_path
from mosaic.profiles.strict_yaml import load_yaml

log = logging.getLogger(__name__)
BY = "workload.calibrate"   # what calibrated the profile, in its record and its models' sources


def check_calibrate(c: MosaicConfig, profiles: ProfileSet, profiled_on: str) -> None:
    """What a calibration needs, checked before anything is built or measured; `profiled_on`: what
    the profiles were measured on (cpu, gpu, a GPU's name, or auto: run.builder.measured_on)."""
    if c.topology.kind != "flat":
        raise ConfigError(f"workload.calibrate=true: topology={c.topology.kind} places its agents from the profiles "
                          "before it knows which models serve; calibrate the profile once with python "
                          "experiments/calibrate_profile.py profile=... and name the file it writes in "
                          "workload.profiles (or topology.profiles), or set workload.calibrate=false")
    if importlib.util.find_spec("vllm") is None:
        raise ConfigError("workload.calibrate=true times batches on this machine's vLLM engines, and vLLM is not "
                          "installed: pip install vllm (CPU: bash scripts/install_vllm_cpu.sh), or set "
                          "workload.calibrate=false")
    from mosaic.backends.vllm.backend import resolve_device

    device = resolve_device(_options(c)["device"])
    if profiled_on != "auto" and (device == "cpu") != (profiled_on == "cpu"):
        raise ConfigError(f"workload.calibrate=true: this machine's engines run on {device}, but the profiles "
                          f"'{c.workload.profiles}' were measured on "
                          f"{'a CPU' if profiled_on == 'cpu' else profiles.engine.device.split(':', 1)[0].strip()}; "
                          "a calibration scales a profile to the same kind of device: name profiles measured on it in "
                          "workload.profiles, or set workload.calibrate=false")


def _options(c: MosaicConfig) -> dict[str, Any]:
    """The engines' options (the run's where it runs real engines, else the vLLM backend's
    defaults) and the calibration's batches (`grid`, as experiments/calibrate_profile.py times them)."""
    from omegaconf import OmegaConf

    defaults = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "backend" / "vllm.yaml"), resolve=True)["options"]
    grid = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "calibrate_profile.yaml"), resolve=True)["grid"]
    given = dict(c.backend.options) if c.backend.name == "vllm" else {}
    return {**defaults, **given, "grid": grid}


def calibrate(c: MosaicConfig, profiles: ProfileSet, models: Sequence[str]) -> tuple[ProfileSet, dict[str, Any]]:
    """(the profile set workload.profiles names, calibrated to this machine for `models`; the
    calibrated file's content). The engine settings of the config are applied by the caller, as
    to any profile set."""
    from mosaic.backends.vllm import probe
    from mosaic.backends.vllm.backend import device_env
    from mosaic.backends.vllm.models import ModelRegistry

    path = profile_path(c.workload.profiles)
    raw = load_yaml(path.read_text(encoding="utf-8"), str(path))
    names = sorted(set(models))
    for name in names:
        if not profiles.models[name].cost:
            raise ConfigError(f"workload.calibrate=true: model {name} in the profiles '{c.workload.profiles}' has no "
                              "measured step cost (`cost`) to scale; only profiles written by "
                              "experiments/profile_models.py can be calibrated. Set workload.calibrate=false")
    registry = ModelRegistry(asdict(c.models))
    engines = {name: registry.resolve(name) for name in names}   # an unknown model: its error, before engines start
    opts = _options(c)
    n = max(1, min(c.cluster.n_workers, c.cluster.workers_per_host, len(names)))
    envs = device_env(n, opts["device"], opts["kv_cache_gib"], opts["cpu_confine"])
    grid = opts["grid"]
    batches = grid["repeats"] * len(probe.grid_cells(grid)) * len(names)
    started = time.time()
    with bar(batches, f"calibrating {len(names)} models on {n} workers", unit="batch") as b:
        measured = probe.measure_split(engines, envs, grid, lambda: b.update(1),
                                       probe.expected_times(profiles, names, grid))
    check = {"profile": str(path), "when": time.strftime("%Y-%m-%d %H:%M"),
             "models": {name: measured_model(measured[name], profiles.models[name].cost,
                                             profiles.models[name].load_time_s) for name in names}}
    out = calibrated_file(path, raw, check, c.workload.profiles, BY)
    log.info("workload.calibrate: %d models timed in %.0f s; the profile's step costs scaled by (per step / "
             "decode / prefill) %s", len(names), time.time() - started,
             "; ".join(f"{name} " + " / ".join(f"x{m['scales'][g]:.2f}" for g in GROUPS)
                       for name, m in check["models"].items()))
    return parse_profiles(out, "the calibrated profile", path.parent), out
