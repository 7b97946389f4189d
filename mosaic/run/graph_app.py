"""A run of agent graphs (topology=dense|tree) from a built Run: its graph, placement, execution,
summary and output files. mosaic/run/app.py hands a run here when its topology is not flat.

Outputs (docs/outputs.md, "Agent-graph runs"): trace.csv (a row per agent request: served or
cancelled, by which rule), queries.csv (a row per query: start, finish, latency, answer),
sessions.csv (one engine per worker for the whole run), plan.json (the graph's agents and the
placement), trace.perfetto.json, timeline.png and summary.json. Times are seconds from the start of
the run; queries start once every engine is loaded (`ready_s`).
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict
from functools import partial
from typing import TYPE_CHECKING, Any

from mosaic.backends import make_graph_pool
from mosaic.config.defaults import changed
from mosaic.core import serde
from mosaic.core.tables import write_csv
from mosaic.core.progress import bar
from mosaic.graphs.coordinator import GraphCoordinator
from mosaic.graphs.early_exit import should_exit
from mosaic.graphs.outcomes import GraphAnswers
from mosaic.graphs.shape import ROOT
from mosaic.graphs.trace import CANCELLED, FAILED, GRAPH_STAGE, SERVED, GraphTrace
from mosaic.run.graph_setup import prepare
from mosaic.run.serving import distribution
from mosaic.workload.sources import ANSWER_MODEL, ROUTING, not_applied as workload_not_applied

if TYPE_CHECKING:
    from mosaic.run.builder import Run



def execute(r: "Run") -> tuple[GraphTrace, dict[int, str], tuple]:
    c = r.config
    t = c.topology
    profiles = r.graph_profiles or r.profiles
    g = r.graph if r.graph is not None else prepare(c, r.cluster, r.profiles, r.graph_profiles, r.workload)
    shape, placement, dataset, models = g.shape, g.placement, g.dataset, set(g.models)
    answers = GraphAnswers(r.workload.queries, r.workload.options, profiles, dataset, c.seed,
                           c.workload.aggregator_follow, models)
    coordinator = GraphCoordinator(r.workload.queries, shape, placement, answers.outcome,
                                   partial(should_exit, t.early_exit, tau=t.exit_tau), t.early_exit,
                                   t.concurrency, c.seed, t.overlap, t.overlap_chunk)
    with bar(len(r.workload.queries), f"agent graphs ({c.backend.name})") as progress:
        pool = make_graph_pool(c.backend.name, r.backend, profiles, placement, c.backend.plugin)
        trace = coordinator.run(pool, progress)
    return trace, placement, shape


def summary(r: "Run", trace: GraphTrace, placement: dict[int, str]) -> dict[str, Any]:
    c = r.config
    t = c.topology
    served = [x for x in trace.requests if x.status == SERVED]
    cancelled = [x for x in trace.requests if x.status == CANCELLED]
    failed = [x for x in trace.requests if x.status == FAILED]
    # A query whose aggregator failed has no answer (counted wrong) and no latency to report.
    unanswered = {x.query_id for x in failed if x.agent == ROOT}
    agents = [x for x in served if x.agent != ROOT]
    invocations = {m: {"served": 0, "cancelled": 0, "failed": 0} for m in dict.fromkeys(placement.values())}
    for x in trace.requests:
        invocations[x.model][x.status] += 1
    n = len(trace.queries)
    tokens = sum(x.output_tokens for x in served)
    return {
        # The policy that placed the agents' models: the scheduler core's where it was asked to.
        "scheduler": c.scheduler.name if t.placement == "scheduler" else f"graph_placement={t.placement}",
        "backend": trace.backend, "workload": c.workload.name, "seed": c.seed,
        "topology": asdict(t),
        "n_queries": n,
        "n_expert_requests": sum(1 for x in trace.requests if x.agent != ROOT),
        "n_aggregator_requests": sum(1 for x in trace.requests if x.agent == ROOT),
        "n_failed_requests": len(failed), "first_request_error": failed[0].error if failed else None,
        "n_unanswered_queries": len(unanswered),
        "n_served_requests": len(served), "n_cancelled_requests": len(cancelled),
        "cancelled_by": dict(Counter(x.cancelled_by for x in cancelled)),
        "truncated_prompts": trace.truncated_prompts,
        "capped_outputs": trace.capped_outputs,
        # Overlap: prefill-only requests sent ahead, and the prompt tokens requests found cached.
        "prefill_requests": trace.prefill_requests,
        "prefix_cache_hit_tokens": sum(x.cached_tokens for x in served),
        "prefix_cache_hit_rate": (sum(x.cached_tokens for x in served) / sum(x.prompt_tokens for x in served)
                                  if served else None),
        "makespan_s": trace.makespan_s, "ready_s": trace.ready_s,
        "query_latency_s": distribution([q.latency_s for q in trace.queries if q.query_id not in unanswered]),
        "queries_per_s": ((n - len(unanswered)) / (trace.makespan_s - trace.ready_s)
                          if trace.makespan_s > trace.ready_s else None),
        "output_tokens": tokens, "agent_output_tokens": sum(x.output_tokens for x in agents),
        "accuracy": sum(q.correct for q in trace.queries) / n if n else None,
        "invocations": invocations,
        "placement": {str(w): m for w, m in sorted(placement.items())},
        # topology.placement=scheduler: how the policy's solver ended (its fallback, if any)
        "solver": r.graph.solver if r.graph is not None else None,
        "workers": [{"id": w.worker, "busy_s": w.busy_s, "idle_s": w.idle_s,
                     "sessions": [s.model for s in trace.sessions if s.worker == w.worker]} for w in trace.workers],
    }


# Workload settings of the flat pipeline's expert routing and answer model; an agent graph runs
# every agent of its shape and models answers itself (mosaic/graphs/outcomes.py reads only
# aggregator_follow), and fits each prompt to the context as it releases it (truncated_prompts),
# so the flat pipeline's admission policy (oversize) has nothing to decide.
GRAPH_UNREAD = frozenset(ROUTING + tuple(a for a in ANSWER_MODEL if a != "aggregator_follow")
                         + ("prior_strength", "repeat_sample", "oversize"))


def not_applied(c) -> list[str]:
    """The settings this graph run was given that it never reads: the flat pipeline's scheduler
    (unless topology.placement=scheduler, which reads all but K: one model per worker), its
    aggregation gate, its routing and answer-model knobs, and what the workload source ignores."""
    if c.topology.placement != "scheduler":
        out = changed("scheduler", c.scheduler)
    else:
        out = ["scheduler.max_models_per_worker"] if c.scheduler.max_models_per_worker not in (None, 1) else []
    out += changed("aggregation", c.aggregation)
    unread = GRAPH_UNREAD | ({"calibration_seed"} if c.workload.kind == "questions" else set())
    given = changed("workload", c.workload)
    out += [x for x in given if x.split(".")[1] in unread]
    if c.topology.profiles is not None and "workload.profiles" in given:   # the agents' own set is read instead
        out.append("workload.profiles")
    # The graph reads the dataset whatever the source (dataset_of: its accuracies and lengths).
    return out + [x for x in workload_not_applied(c.workload) if x not in out and x != "workload.dataset"]


def format_table(s: dict[str, Any]) -> str:
    t = s["topology"]
    shape = f"layers {t['layers']}" if t["layers"] else f"branching {t['branching']}, depth {t['depth']}"
    lat = s["query_latency_s"]
    rows = [("topology", f"{t['name']} ({t['kind']}: {shape}; early exit {t['early_exit']}; "
                         f"concurrency {t['concurrency']})"),
            ("workload", f"{s['workload']} (seed {s['seed']})"),
            ("queries / agent requests", f"{s['n_queries']} / {s['n_expert_requests'] + s['n_aggregator_requests']} "
                                         f"({s['n_cancelled_requests']} cancelled)"),
            ("query latency mean/p50/p90", "–" if lat["mean"] is None else
             f"{lat['mean']:.1f} / {lat['p50']:.1f} / {lat['p90']:.1f} s"),
            ("makespan (engines ready at)", f"{s['makespan_s']:.1f} s ({s['ready_s']:.1f} s)"),
            ("accuracy", "–" if s["accuracy"] is None else f"{100 * s['accuracy']:.1f}%")]
    if s["n_failed_requests"]:
        rows.append(("FAILED (engines)", f"!!! {s['n_failed_requests']} agent requests, "
                                         f"{s['n_unanswered_queries']} queries left without an answer"))
    if (s.get("solver") or {}).get("fallback"):
        rows.append(("ILP FALLBACK (placement)", f"!!! {s['solver']['fallback']}"))
    rows += [(f"worker {w['id']}", f"{', '.join(w['sessions'])}: busy {w['busy_s']:.0f} s") for w in s["workers"]]
    return "\n".join(f"{k:<31} {v}" for k, v in rows)


def output_files(trace: GraphTrace, placement: dict[int, str], shape: tuple, summary: dict[str, Any]) -> dict:
    """name -> writer(file), as mosaic/run/app.py writes them (atomically, summary.json last)."""
    from mosaic.run.perfetto import document

    session_rows = [dict(serde.to_dict(s), stage=GRAPH_STAGE) for s in trace.sessions]
    request_rows = [serde.to_dict(x) for x in trace.requests]
    drawn = [dict(x, stage=GRAPH_STAGE) for x in request_rows if x["status"] == SERVED]
    plan = {"placement": {str(w): m for w, m in sorted(placement.items())}, "agents": [asdict(a) for a in shape]}
    return {
        "plan.json": lambda f: (json.dump(serde.strict_json(plan), f, indent=1), f.write("\n")),
        "trace.csv": lambda f: write_csv(f, request_rows),
        "sessions.csv": lambda f: write_csv(f, session_rows),
        "queries.csv": lambda f: write_csv(f, [serde.to_dict(q) for q in trace.queries]),
        "trace.perfetto.json": lambda f: json.dump(document(drawn, session_rows, 0.0), f),
        "summary.json": lambda f: (json.dump(serde.strict_json(summary), f, indent=2, allow_nan=False),
                                   f.write("\n")),
    }, session_rows
