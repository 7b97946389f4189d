"""The run builder: the one place that turns the typed config into a run's objects.

    cfg = compose(["scheduler=round_robin", "workload=synth_gpqa"])   # Hydra's mosaic/conf/, as the CLI does
    run = build_run(cfg)              # validated config, cluster, profiles, backend, workload
    result = run.execute()            # expert stage -> agreement -> aggregator stage

The CLI (mosaic/run/app.py), the fidelity check, the paper's analyses and the tests all build runs
here, so a setting reaches its component the same way everywhere.
"""
from __future__ import annotations

import difflib
import logging
from dataclasses import asdict, dataclass, fields, is_dataclass, replace
from typing import Any, Sequence

from omegaconf import DictConfig, OmegaConf

from mosaic.backends import BACKENDS, Backend, make_backend
from mosaic.cluster import Cluster
from mosaic.config import CONF_DIR, schema
from mosaic.config.defaults import check_label
from mosaic.config.mappings import for_hydra, replace_given
from mosaic.config.schema import EngineConfig, MosaicConfig, register_configs
from mosaic.core.errors import ConfigError
from mosaic.costs.predict import admit_requests
from mosaic.costs.problem import StageProblem
from mosaic.plan import Plan
from mosaic.profiles import EngineProfile, ProfileSet, load_profiles
from mosaic.runtime import RUNTIMES
from mosaic.run.graph_setup import GraphSetup, check_settings as check_graph_settings, prepare as prepare_graph
from mosaic.run.pipeline import PipelineResult, plan_stage, run_pipeline
from mosaic.schedulers import get_scheduler
from mosaic.workload.build import build_workload
from mosaic.workload.types import Request, Workload

log = logging.getLogger(__name__)

# The schema's section types by name (its annotations are strings under `from __future__`).
_SECTIONS = {name: obj for name, obj in vars(schema).items() if is_dataclass(obj)}


def compose(overrides: Sequence[str] = (), config_name: str = "config") -> DictConfig:
    """The config the CLI would run with these overrides (Hydra's compose API over mosaic/conf/)."""
    from hydra import compose as hydra_compose, initialize_config_dir

    register_configs()
    overrides = for_hydra(overrides)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return replace_given(hydra_compose(config_name=config_name, overrides=overrides), overrides)


def unknown_keys(cfg: Any, schema: type = MosaicConfig, prefix: str = "") -> list[str]:
    """Keys of a composed config that no schema field declares (`+foo=1`, a misspelt
    `+scheduler.max_model_per_worker=2`): Hydra accepts an added key, and nothing would read it."""
    out = []
    names = {f.name: f for f in fields(schema)}
    for key in cfg:
        if key not in names:
            out.append(f"{prefix}{key}")
            continue
        sub = names[key].type
        sub = _SECTIONS.get(sub, sub) if isinstance(sub, str) else sub
        if is_dataclass(sub) and isinstance(cfg[key], (dict, DictConfig)):
            out += unknown_keys(cfg[key], sub, f"{prefix}{key}.")
    return out


def setting_names() -> tuple[list[str], list[str]]:
    """The schema's sections (scheduler, workload, ...) and its dotted settings (scheduler.name, ...)."""
    dotted = [f"{s.name}.{f.name}" for s in fields(MosaicConfig) if is_dataclass(_SECTIONS.get(s.type, s.type))
              for f in fields(_SECTIONS.get(s.type, s.type))]
    return [f.name for f in fields(MosaicConfig)], dotted


def typed(cfg: DictConfig | MosaicConfig) -> MosaicConfig:
    """The composed config as schema objects; every section validates itself here (ConfigError)."""
    if isinstance(cfg, MosaicConfig):
        return cfg
    if "hydra" in cfg:
        cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    bad = unknown_keys(cfg)
    if bad:
        top, dotted = setting_names()

        def hint(k: str) -> str:
            # A key of a known section is compared with that section's settings by its own name
            # ("scheduler" is no fix for "scheduler.foo", nor is "scheduler.name"); without a close
            # one, the section's settings are listed.
            section, _, leaf = k.partition(".")
            mine = [d.split(".", 1)[1] for d in dotted if d.startswith(section + ".")]
            if leaf and mine:
                m = difflib.get_close_matches(leaf, mine, 1)
                return f"{k} (did you mean {section}.{m[0]}?)" if m else f"{k} ({section} has: {', '.join(mine)})"
            m = difflib.get_close_matches(k, top + dotted, 1)
            return f"{k} (did you mean {m[0]}?)" if m else k

        hints = [hint(k) for k in bad]
        raise ConfigError(f"unknown setting(s) {', '.join(hints)}: nothing reads them; remove them or fix the "
                          "name (settings: mosaic/config/schema.py)")
    out = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(MosaicConfig), cfg))
    check_label("aggregation", out.aggregation, ("policy", "tau"))
    return out


@dataclass(frozen=True)
class Run:
    config: MosaicConfig
    cluster: Cluster
    profiles: ProfileSet
    workload: Workload
    backend: Backend
    # Requests cut to fit the engine (workload.oversize=truncate); with "reject" a request that
    # does not fit stops build_run with a ConfigError instead.
    truncated: tuple[str, ...] = ()
    # An agent-graph run's agents, where topology.profiles names their own profile set.
    graph_profiles: ProfileSet | None = None
    # An agent-graph run's shape and placement (mosaic/run/graph_setup.py).
    graph: GraphSetup | None = None
    # workload.calibrate=true: the profile file calibrated to this machine, as the run folder keeps it.
    calibrated: dict[str, Any] | None = None

    def execute(self) -> PipelineResult:
        c = self.config
        return run_pipeline(self.workload, self.cluster, self.profiles, c.scheduler, self.backend, c.aggregation,
                            c.runtime, c.seed)

    def plan(self, stage: str, requests: list[Request], model_order: Sequence[str],
             placement: str = "scheduled") -> tuple[StageProblem, Plan]:
        """The stage's plan exactly as `execute` makes it (placement: "scheduled" for experts,
        the config's aggregation.placement for the aggregator)."""
        return plan_stage(stage, requests, model_order, self.config.scheduler, placement, self.cluster,
                          self.profiles, self.workload)

    def other_backend(self, name: str, **options: Any) -> Backend:
        """Another backend over the same cluster and profiles (e.g. the simulator beside vLLM)."""
        return make_backend(name, self.cluster, self.profiles, models=asdict(self.config.models), **options)

    def with_workload(self, workload: Workload) -> "Run":
        # an agent graph's placement was made for the old workload: made again when it executes
        return replace(self, workload=workload, graph=None)


def measured_on(device: str) -> str:
    """What a device setting names: "cpu", "gpu" (a GPU of no stated kind), "auto" (anything), or a
    GPU's name. A profile written by experiments/profile_models.py records its device option and the
    workers' environment ("auto: {...}"); an environment that hides every GPU and binds CPU cores
    was a CPU's."""
    head, _, env = str(device).partition(":")
    head = head.strip().lower()
    if head == "cpu" or "VLLM_CPU_OMP_THREADS_BIND" in env or "'CUDA_VISIBLE_DEVICES': ''" in env:
        return "cpu"
    if head == "cuda" or "CUDA_VISIBLE_DEVICES" in env:
        return "gpu"
    return head


def bundled_devices() -> dict[str, list[str]]:
    """Device -> the bundled profile sets measured (or derived) for it, for an error that says
    which exist (each file's engine.device, read without validating the rest)."""
    import yaml

    from mosaic.profiles.loader import BUNDLED_DIR

    out: dict[str, list[str]] = {}
    for p in sorted(BUNDLED_DIR.glob("*.yaml")):
        try:
            device = yaml.safe_load(p.read_text())["engine"]["device"]
        except (OSError, yaml.YAMLError, KeyError, TypeError):
            continue
        kind = measured_on(device)
        out.setdefault(device.split(":", 1)[0].strip() if kind not in ("cpu", "gpu") else kind, []).append(p.stem)
    return out


def check_device(cluster_device: str, profile_device: str, profiles_name: str) -> None:
    """cluster.device names the GPUs (or cpu) the run is about; the profiles' costs were measured
    (or derived) for one device, so the two must agree. A profile measured on a GPU of no stated
    kind agrees with any GPU; "auto" with anything."""
    want, have = measured_on(cluster_device), measured_on(profile_device)
    if "auto" in (want, have) or want == have or (have == "gpu" and want != "cpu"):
        return
    if have == "cpu":
        # Said, not refused: the CPU smoke workload on the default GPU cluster is how the real-engine
        # smoke runs are written, and the run is what was asked for; its times are the CPU's.
        log.warning("cluster.device=%s but the profiles '%s' were measured on a CPU: the run is simulated at "
                    "the CPU's speeds on %s workers; set cluster=cpu2 (or cluster.device=cpu) to say so, or name "
                    "profiles measured on your GPUs (bundled sets by device: %s)", cluster_device, profiles_name,
                    cluster_device, "; ".join(f"{d}: {', '.join(n)}" for d, n in bundled_devices().items()))
        return
    shown = "this machine's CPU (cpu)" if have == "cpu" else (
        "a GPU" if have == "gpu" else profile_device.split(":", 1)[0].strip())
    sets = "; ".join(f"{d}: {', '.join(names)}" for d, names in bundled_devices().items())
    match = ("cluster=cpu2 (or cluster.device=cpu)" if have == "cpu"
             else f"cluster.device={profile_device.split(':', 1)[0].strip()}" if have != "gpu" else "a GPU cluster")
    raise ConfigError(f"cluster.device={cluster_device} but the profiles '{profiles_name}' were measured on {shown}: "
                      f"set {match}, or name profiles measured on your device in workload.profiles (bundled sets "
                      f"by device: {sets}; your own: experiments/profile_models.py, or "
                      "experiments/calibrate_profile.py from a bundled one)")


def check_host(workers_per_host: int, engine: EngineProfile, profiles_name: str) -> None:
    """A host shared by more workers than the profile measured busy at once has an unknown step cost."""
    hc = engine.host_contention
    if hc is not None and workers_per_host > hc.profiled_workers:
        raise ConfigError(f"cluster.workers_per_host={workers_per_host} but the profiles '{profiles_name}' measured "
                          f"host contention with at most {hc.profiled_workers} busy workers: set "
                          f"cluster.workers_per_host<={hc.profiled_workers}, or measure more with "
                          f"experiments/profile_contention.py n_workers={workers_per_host}")


def engine_settings(profiles: ProfileSet, e: EngineConfig) -> ProfileSet:
    """The profiles with the config's engine settings applied (both backends read them there)."""
    changes = {k: v for k, v in (("scheduling", e.scheduling), ("num_gpu_blocks", e.num_gpu_blocks))
               if v is not None and v != getattr(profiles.engine, k)}
    return replace(profiles, engine=replace(profiles.engine, **changes)) if changes else profiles


def check_runtime(c: MosaicConfig, backend: type) -> None:
    """The runtime exists, and the backend honours it (a backend's `runtimes`: the names it runs;
    None: all), and it applies to the run's shape."""
    RUNTIMES.get(c.runtime.name)
    if c.arrivals.online():   # the online coordinator binds every request itself, on either backend
        return
    honoured = getattr(backend, "runtimes", ("static",))
    if honoured is not None and c.runtime.name not in honoured:
        raise ConfigError(f"runtime={c.runtime.name}: backend={c.backend.name} runs only runtime="
                          f"{' | '.join(honoured)}; set runtime=static, or backend=sim")
    if c.runtime.name != "static" and c.topology.kind != "flat":
        raise ConfigError(f"runtime={c.runtime.name}: offline agent graphs (topology={c.topology.kind}) bind each "
                          "request when its precursors finish, to the replica of its model with the fewest in "
                          "flight; set runtime=static, topology=flat, or arrivals=poisson|gamma|trace (online "
                          "runs route by the runtime)")


def build_run(cfg: DictConfig | MosaicConfig) -> Run:
    """Validate the config, then build in the order that fails cheapest first: a typo in a name
    or a missing engine (vLLM not installed) stops the run before any workload is generated."""
    c = typed(cfg)
    get_scheduler(c.scheduler.name, c.scheduler.plugin)
    check_graph_settings(c)
    cluster = Cluster.uniform(c.cluster.n_workers, c.cluster.memory_gib, c.cluster.device, c.cluster.workers_per_host)
    profiles = load_profiles(c.workload.profiles)
    profiles = engine_settings(profiles, c.engine)
    check_host(c.cluster.workers_per_host, profiles.engine, c.workload.profiles)
    graph_profiles = engine_settings(load_profiles(c.topology.profiles), c.engine) if c.topology.profiles else None
    if graph_profiles is not None:
        check_host(c.cluster.workers_per_host, graph_profiles.engine, c.topology.profiles)
    # The cluster runs the graph's agents where they have their own profiles: their device is the one.
    check_device(c.cluster.device, (graph_profiles or profiles).engine.device,
                 c.topology.profiles or c.workload.profiles)
    check_runtime(c, BACKENDS.get(c.backend.name, c.backend.plugin))
    if c.workload.calibrate:
        from mosaic.run.calibration import check_calibrate

        check_calibrate(c, profiles, measured_on(profiles.engine.device))
    backend = make_backend(c.backend.name, cluster, profiles, plugin=c.backend.plugin,
                           models=asdict(c.models), **c.backend.options)
    workload = build_workload(asdict(c.workload), profiles, c.seed)
    # Requests the engine cannot serve as asked: refused here, before any stage, or cut to fit
    # and counted (mosaic/costs/predict.py admit_requests).
    # An agent graph sends none of the flat pipeline's requests: it fits each of its own prompts to
    # the context as it releases them (counted in summary.json truncated_prompts).
    workload, truncated = (admit_requests(workload, cluster, profiles, c.aggregation.placement, c.workload.oversize)
                           if c.topology.kind == "flat" and not c.arrivals.online() else (workload, []))
    if c.arrivals.kind == "trace":   # a bad file stops the run here, before any engine starts
        from mosaic.workload.arrivals import arrival_times
        arrival_times(c.arrivals, len(workload.queries), c.seed)
    calibrated = None
    if c.workload.calibrate:   # minutes of engines: after everything that can fail cheaper
        from mosaic.run.calibration import calibrate

        serving = {r.model for r in workload.expert_requests()} | {workload.aggregator}
        measured, calibrated = calibrate(c, profiles, sorted(serving))
        profiles = engine_settings(measured, c.engine)
        backend = make_backend(c.backend.name, cluster, profiles, plugin=c.backend.plugin,
                               models=asdict(c.models), **c.backend.options)
    r = Run(c, cluster, profiles, workload, backend, tuple(truncated), graph_profiles, calibrated=calibrated)
    if c.topology.kind != "flat" or c.arrivals.online():
        r = replace(r, graph=prepare_graph(c, cluster, profiles, graph_profiles, workload))
    return r
