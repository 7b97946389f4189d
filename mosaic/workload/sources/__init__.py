"""Workload sources, one module each, registered by `workload.kind`: synthetic (generated from a
preset), questions (real question sets, modelled answers), trace (recorded model outputs replayed).

A source is a function (workload config dict, profiles, seed) -> Workload decorated with
`@register_source("kind")`; a new one is one module here (found on first lookup) plus a
conf/workload/<name>.yaml, or a module outside mosaic named by `workload.plugin`."""
from mosaic.core.registry import Registry

SOURCES = Registry("workload source", "workload.kind", package="mosaic.workload.sources")
register_source = SOURCES.register
