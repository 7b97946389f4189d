"""The backend interface and registry. A backend runs a Plan and returns a Trace; it never schedules.

The built-in backends live in their own top-level packages (sim/, mosaic/backends/vllm/) and are registered
by import path, so that a backend's heavy dependencies (SimPy, vLLM) load only when it is chosen.
A backend outside them is a class with this constructor and `run`, registered with
`@BACKENDS.register("name")` in a module that `backend.plugin` names.
"""
from __future__ import annotations

import inspect
from typing import Any, Mapping, Protocol

from mosaic.cluster import Cluster
from mosaic.core.errors import ConfigError
from mosaic.core.registry import Registry
from mosaic.plan import Plan
from mosaic.runtime import Runtime
from mosaic.profiles import ProfileSet
from mosaic.trace import Trace
from mosaic.workload.types import Outcome, Request


class Backend(Protocol):
    name: str
    # The runtimes (mosaic/runtime) it honours: None, every one; a backend that does not say runs
    # only the plan's assignment (static).
    runtimes: tuple[str, ...] | None

    def __init__(self, cluster: Cluster, profiles: ProfileSet, models: Mapping[str, Any] | None = None,
                 **options: Any) -> None: ...

    def run(self, plan: Plan, requests: Mapping[str, Request],
            replay: Mapping[str, Outcome] | None, runtime: "Runtime | None" = None) -> Trace:
        """Execute every request of the plan; `replay` gives output lengths/answers to reproduce;
        `runtime` decides what the plan leaves open (None: the plan's assignment)."""


BACKENDS: Registry[type] = Registry("backend", "backend.name")
BACKENDS.register_lazy("sim", "mosaic.backends.sim.backend:SimBackend")
BACKENDS.register_lazy("vllm", "mosaic.backends.vllm.backend:VllmBackend")

# name -> class(backend, profiles, placement): the backend's engines for an agent-graph run.
GRAPH_POOLS: Registry[type] = Registry("agent-graph engine pool", "backend.name")
GRAPH_POOLS.register_lazy("sim", "mosaic.backends.sim.graph_pool:SimGraphPool")
GRAPH_POOLS.register_lazy("vllm", "mosaic.backends.vllm.graph_pool:VllmGraphPool")


def make_backend(name: str, cluster: Cluster, profiles: ProfileSet, plugin: str | None = None,
                 **options: Any) -> Backend:
    backend_cls = BACKENDS.get(name, plugin)
    params = inspect.signature(backend_cls.__init__).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        takes = sorted(k for k in params if k not in ("self", "cluster", "profiles", "models"))
        unknown = sorted(k for k in options if k not in params)
        if unknown:
            raise ConfigError(f"backend.options.{unknown[0]}: backend '{name}' has no option '{unknown[0]}'; its "
                              f"options are {', '.join(takes) or 'none'} (drop it, or choose the backend that "
                              "takes it with backend=...)")
    try:
        return backend_cls(cluster=cluster, profiles=profiles, **options)
    except TypeError as e:
        raise ConfigError(f"backend.options: {e}") from None


def make_graph_pool(name: str, backend: Backend, profiles: ProfileSet, placement: dict[int, str],
                    plugin: str | None = None):
    """The engine pool of backend `name` for an agent-graph run, `placement` worker -> model."""
    if name not in GRAPH_POOLS.available():
        if plugin:   # a plugin module may register its pool under the backend's name
            BACKENDS.get(name, plugin)
        if name not in GRAPH_POOLS.available():
            raise ConfigError(f"backend={name} cannot run agent graphs (no engine pool registered for it); "
                              f"use one of {', '.join(GRAPH_POOLS.available())}, or topology=flat")
    return GRAPH_POOLS.get(name)(backend, profiles, placement)
