"""The runtime layer: what decides while a stage runs, between its Plan and the backend.

The plan keeps what it is good at (which models on which workers, in which order); a runtime
decides the rest as the run reveals it. A backend drives it with events (requests released, a
request finished) and asks it for decisions (may this planned session start, which request a
replica with room takes next, which model a worker done with its plan loads). The same object
serves every backend that honours late binding; `static` is the plan's own assignment.

    runtime = make_runtime(cfg.runtime, plan, inputs)     # inputs: mosaic.runtime.base.StageInputs
    trace = backend.run(plan, requests, replay, runtime)

A new runtime is one module here registering a `Runtime` subclass with `@RUNTIMES.register(name)`,
plus mosaic/conf/runtime/<name>.yaml.
"""
from __future__ import annotations

from mosaic.config.schema import RuntimeConfig
from mosaic.core.registry import Registry
from mosaic.plan import Plan
from mosaic.runtime.base import Replica, Runtime, StageInputs, stage_inputs

RUNTIMES: Registry[type] = Registry("runtime", "runtime.name", package="mosaic.runtime")
available = RUNTIMES.available


def make_runtime(cfg: RuntimeConfig, plan: Plan, inputs: StageInputs) -> Runtime:
    return RUNTIMES.get(cfg.name)(plan, inputs, cfg)


__all__ = ["RUNTIMES", "Replica", "Runtime", "StageInputs", "available", "make_runtime", "stage_inputs"]
