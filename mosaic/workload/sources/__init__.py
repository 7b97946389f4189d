"""Workload sources, one module each, registered by `workload.kind`: synthetic (generated from a
preset), questions (real question sets, modelled answers), trace (recorded model outputs replayed).

A source is a function (workload config dict, profiles, seed) -> Workload decorated with
`@register_source("kind", reads=...)`; a new one is one module here (found on first lookup) plus a
mosaic/conf/workload/<name>.yaml, or a module outside mosaic named by `workload.plugin`."""
from __future__ import annotations

from dataclasses import fields
from typing import Callable

from mosaic.core.registry import Registry

SOURCES = Registry("workload source", "workload.kind", package="mosaic.workload.sources")

# Read by the run whatever the source: its label, the source itself, the profile set and admission.
COMMON = frozenset({"name", "kind", "plugin", "profiles", "calibrate", "oversize"})
# Read by every source that recruits experts with mosaic.workload.routing.
ROUTING = ("k", "routing", "replacement", "routing_noise")
# The answer model's knobs (mosaic/workload/answer_model.py), read where answers are modelled.
ANSWER_MODEL = ("skill_spread", "coupling", "difficulty_accuracy", "difficulty_length", "length_shared",
                "distractor_share", "aggregator_follow")


def register_source(kind: str, reads: tuple[str, ...] | None = None) -> Callable:
    """Register a source under `kind`. reads: the WorkloadConfig fields it uses beyond COMMON; a run
    that sets any other field away from its default records it as not applied (summary.json
    settings_not_applied) and says so. None: the source does not say, nothing is recorded."""
    def deco(fn):
        fn.reads = None if reads is None else frozenset(reads) | COMMON
        return SOURCES.register(kind)(fn)
    return deco


def not_applied(w) -> list[str]:
    """The workload settings (a WorkloadConfig) this run sets away from their defaults that its
    source never reads, or that its routing makes moot (the Gumbel noise belongs to the
    without-replacement router; Table 3 routing has neither)."""
    from mosaic.config.schema import WorkloadConfig
    reads = getattr(SOURCES.get(w.kind, w.plugin), "reads", None)
    if reads is None:
        return []
    reads = set(reads)
    if w.routing == "paper_table3":
        reads -= {"replacement", "routing_noise"}
    elif w.replacement:
        reads.discard("routing_noise")
    else:   # distinct experts: no expert is recruited twice, so no repeated sample to replay or resample
        reads.discard("repeat_sample")
    if w.kind == "trace" and w.calibration_questions:   # a calibration file: nothing is held out or split
        reads -= {"calibration_size", "calibration_seed"}
    default = WorkloadConfig()
    return [f"workload.{f.name}" for f in fields(WorkloadConfig)
            if f.name not in reads and getattr(w, f.name) != getattr(default, f.name)]
