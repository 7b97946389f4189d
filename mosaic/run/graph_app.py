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
from mosaic.graphs.coordinator import SKIPPED, GraphCoordinator, Replan
from mosaic.graphs.early_exit import should_exit
from mosaic.core.errors import ConfigError
from mosaic.graphs.outcomes import AgentOutcome, GraphAnswers
from mosaic.run.aggregation import decide
from mosaic.workload.types import aggregator_request_id
from mosaic.graphs.shape import ROOT
from mosaic.graphs.trace import CANCELLED, FAILED, GRAPH_STAGE, SERVED, GraphTrace
from mosaic.run.graph_setup import expert_rid, prepare
from mosaic.workload.arrivals import arrival_times
from mosaic.run.online import online_metrics
from mosaic.runtime.settings import not_applied as runtime_not_applied
from mosaic.run.serving import distribution, percentiles_text
from mosaic.workload.sources import ANSWER_MODEL, ROUTING, not_applied as workload_not_applied

if TYPE_CHECKING:
    from mosaic.run.builder import Run



def execute(r: "Run") -> tuple[GraphTrace, dict[int, str], tuple]:
    c = r.config
    t = c.topology
    profiles = r.graph_profiles or r.profiles
    g = r.graph if r.graph is not None else prepare(c, r.cluster, r.profiles, r.graph_profiles, r.workload)
    shape, placement, dataset, models = g.shape, g.placement, g.dataset, set(g.models)
    online: dict[str, Any] = {}
    if c.arrivals.online():
        online = dict(arrivals=arrival_times(c.arrivals, len(r.workload.queries), c.seed),
                      engines=c.arrivals.engines, max_in_system=c.arrivals.max_in_system,
                      router=ROUTER_OF[c.runtime.name], slots=profiles.engine.max_num_seqs)
        if c.runtime.replan:
            online["replan"] = replan_model(r, g, profiles)
    if g.shapes is not None:   # the MoA pipeline online: replayed outcomes, the aggregation gate
        moa = MoaOutcomes(r.workload, c.aggregation)
        outcome, online["shape_of"], online["gate"] = moa.outcome, (lambda q: g.shape_for(q.id)), moa.gate
        online["root_prompt_cap"] = profiles.engine.aggregator_cap
    else:
        outcome = GraphAnswers(r.workload.queries, r.workload.options, profiles, dataset, c.seed,
                               c.workload.aggregator_follow, models).outcome
    coordinator = GraphCoordinator(r.workload.queries, shape, placement, outcome,
                                   partial(should_exit, t.early_exit, tau=t.exit_tau), t.early_exit,
                                   t.concurrency, c.seed, t.overlap, t.overlap_chunk, **online)
    with bar(len(r.workload.queries), f"agent graphs ({c.backend.name})") as progress:
        pool = make_graph_pool(c.backend.name, r.backend, profiles, placement, c.backend.plugin)
        trace = coordinator.run(pool, progress)
    return trace, placement, shape


def replan_model(r: "Run", g, profiles) -> Replan:
    """What re-planning knows of each model of the run (Replan): a mean request's time alone, how
    many its engine holds at once, its load time; means from the calibration split where the
    workload has one, else the profiles' length distributions."""
    from mosaic.engine.session import cost_model, usable_kv_tokens
    from mosaic.profiles import load_time_s
    from mosaic.workload.prompts import AGGREGATOR_TEMPLATE_TOKENS

    w = r.workload
    cal = w.calibration if g.shapes is not None else {}
    mean_out = {m: (cal[m].mean_output if m in cal else profiles.model(m).output_for(g.dataset).mean())
                for m in sorted(g.models)}
    prompt = sum(q.prompt_tokens for q in w.queries) / max(1, len(w.queries))
    shapes = list(g.shapes.values())[:1000] if g.shapes is not None else [g.shape]
    lengths: dict[str, list[tuple[float, float]]] = {}
    for shape in shapes:
        by_name = {a.name: a for a in shape}
        for a in shape:
            p = prompt + (AGGREGATOR_TEMPLATE_TOKENS + sum(mean_out[by_name[x].model] for x in a.reads)
                          if a.reads else 0)
            lengths.setdefault(a.model, []).append((p, mean_out[a.model]))
    memory = min(x.memory_gib for x in r.cluster.workers)
    concurrency, load, step = {}, {}, {}
    for m, pairs in lengths.items():
        prof = profiles.model(m)
        p, o = (sum(x[0] for x in pairs) / len(pairs), sum(x[1] for x in pairs) / len(pairs))
        concurrency[m] = max(1.0, min(profiles.engine.max_num_seqs,
                                      usable_kv_tokens(prof, profiles.engine, memory) / (p + o)))
        load[m] = load_time_s(prof, profiles.engine, 1) + prof.warmup_s
        cost, ctx = cost_model(prof, profiles.engine), p + o / 2   # a mean request's context, half way
        step[m] = lambda b, cost=cost, ctx=ctx: cost.decode_base_s(max(1, round(b))) + \
            cost.decode_ms_per_ctx_token * b * ctx / 1e3
    return Replan(r.config.runtime.replan_ratio, {m: mean_out[m] for m in lengths}, concurrency, step, load)


# The coordinator's router for each runtime of an online run: static binds by a fixed rotation,
# blind to load (no plan made before the run can see the requests' lengths or arrivals).
ROUTER_OF = {"static": "round_robin", "least_outstanding": "least_outstanding", "p2c": "p2c", "pull": "pull"}


class MoaOutcomes:
    """The MoA pipeline's queries as graphs: each agent replays its request's outcome from the
    workload (as the flat pipeline's backends do), and the aggregation rule may answer a query
    from its experts (mosaic/run/aggregation.py)."""

    def __init__(self, workload, aggregation):
        self.replay, self.aggregation = workload.outcomes, aggregation

    def outcome(self, query, agent, index, inputs, room) -> AgentOutcome:
        rid = aggregator_request_id(query.id) if agent.name == ROOT else expert_rid(query.id, agent.name)
        o = self.replay.get(rid)
        if o is None:
            raise ConfigError(f"request {rid}: no output length to replay")
        tokens = max(1, min(o.output_tokens, room))
        return AgentOutcome(tokens, o.answer, 1.0, o.answer is not None and o.answer == query.gold,
                            o.output_tokens > room)

    def gate(self, query, inputs) -> tuple[str | None] | None:
        # An expert that failed is a vote for nothing, as in the flat pipeline.
        answers = [o.answer for o in inputs] + [None] * (len(query.experts) - len(inputs))
        d = decide(self.aggregation, {query.id: answers})[0]
        return (d.majority,) if d.skip else None


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
    online = None
    if c.arrivals.online():
        online = online_metrics(trace, r.graph.shape_for, r.graph_profiles or r.profiles, c.slo)
    moa = t.kind == "flat"
    return {
        # The policy that placed the agents' models: the scheduler core's where it was asked to.
        "scheduler": (c.scheduler.name if t.placement == "scheduler" or moa else f"graph_placement={t.placement}"),
        "runtime": c.runtime.name,
        "arrivals": {"kind": c.arrivals.kind, "rate": c.arrivals.rate, "cv": c.arrivals.cv if c.arrivals.kind == "gamma"
                     else None, "path": c.arrivals.path, "engines": c.arrivals.engines,
                     "max_in_system": c.arrivals.max_in_system},
        "online": online,
        "replicas_moved": [asdict(m) for m in trace.moves] if c.runtime.replan else None,
        "aggregation": {"name": c.aggregation.name, "policy": c.aggregation.policy, "tau": c.aggregation.tau} if moa
        else None,
        "skip_rate": (sum(1 for x in trace.requests if x.agent == ROOT and x.cancelled_by == SKIPPED) / n
                      if moa and n else None),
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
        "query_latency_s": distribution([q.latency_s for q in trace.queries
                                         if q.query_id not in unanswered and not q.rejected]),
        "queries_per_s": ((n - len(unanswered) - sum(q.rejected for q in trace.queries))
                          / (trace.makespan_s - trace.ready_s)
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
    aggregation gate, its routing and answer-model knobs, and what the workload source ignores.
    The MoA pipeline online reads them all but K and the aggregator's placement (one model per
    worker, each loaded for the whole run)."""
    if c.topology.kind == "flat":
        out = ["scheduler.max_models_per_worker"] if c.scheduler.max_models_per_worker not in (None, 1) else []
        out += [k for k in changed("aggregation", c.aggregation) if k == "aggregation.placement"]
        return out + runtime_not_applied(c) + workload_not_applied(c.workload)
    out = runtime_not_applied(c)
    if c.topology.placement != "scheduler":
        out += changed("scheduler", c.scheduler)
    else:
        out += ["scheduler.max_models_per_worker"] if c.scheduler.max_models_per_worker not in (None, 1) else []
    out += changed("aggregation", c.aggregation)
    unread = GRAPH_UNREAD | ({"calibration_seed"} if c.workload.kind == "questions" else set())
    given = changed("workload", c.workload)
    out += [x for x in given if x.split(".")[1] in unread]
    if c.topology.profiles is not None and "workload.profiles" in given:   # the agents' own set is read instead
        out.append("workload.profiles")
    # The graph reads the dataset whatever the source (dataset_of: its accuracies and lengths).
    return out + [x for x in workload_not_applied(c.workload) if x not in out and x != "workload.dataset"]


def online_rows(s: dict[str, Any]) -> list[tuple[str, str]]:
    """The console's lines on an online run's arrivals, SLO and latencies (mosaic/run/online.py)."""
    a, o = s["arrivals"], s["online"]
    if a["kind"] == "trace":
        how = f"trace {a['path']}" + (f" at {a['rate']:g} queries/s" if a["rate"] else " as recorded")
    else:
        how = f"{a['kind']}, {a['rate']:g} queries/s" + (f", cv {a['cv']:g}" if a["kind"] == "gamma" else "")
    slo = o["slo"]
    target = f"{slo['latency_s']:g} s" if slo["latency_s"] is not None else f"{slo['multiple']:g}x its unloaded latency"
    rows = [("arrivals", f"{how}; engines {a['engines']}; runtime {s['runtime']}"),
            ("SLO attainment", "–" if o["slo_attainment"] is None else
             f"{100 * o['slo_attainment']:.1f}% of queries answered within {target}"),
            ("goodput / throughput", "–" if o["goodput_qps"] is None else
             f"{o['goodput_qps']:.3f} / {o['request_throughput_qps']:.3f} queries/s over {o['span_s']:.0f} s"),
            ("query E2E p50/p90/p99", percentiles_text(o["query_e2e_s"]))]
    for stage in ("expert", "aggregator"):
        st = o[stage]
        if st["requests"]:
            rows.append((f"{stage} TTFT p50/p90/p99", percentiles_text(st["ttft_s"])
                         + f"; TPOT {percentiles_text(st['tpot_s'], 1e3, 'ms')}"))
    if o["rejected"]:
        rows.append(("REJECTED (admission)", f"!!! {o['rejected']} of {o['queries']} queries (arrivals.max_in_system="
                                             f"{a['max_in_system']})"))
    return rows


def format_table(s: dict[str, Any]) -> str:
    t = s["topology"]
    lat = s["query_latency_s"]
    if t["kind"] == "flat":
        agg = s["aggregation"]
        head = [("topology", f"MoA pipeline online (routed experts, then the aggregator unless they agree: "
                             f"{agg['policy']}, tau {agg['tau']:g}); placed by {s['scheduler']}")]
    else:
        shape = f"layers {t['layers']}" if t["layers"] else f"branching {t['branching']}, depth {t['depth']}"
        head = [("topology", f"{t['name']} ({t['kind']}: {shape}; early exit {t['early_exit']}"
                             + ("" if s.get("online") else f"; concurrency {t['concurrency']}") + ")")]
    rows = head + [
            ("workload", f"{s['workload']} (seed {s['seed']})"),
            ("queries / agent requests", f"{s['n_queries']} / {s['n_expert_requests'] + s['n_aggregator_requests']} "
                                         f"({s['n_cancelled_requests']} cancelled)"),
            ("query latency mean/p50/p90", "–" if lat["mean"] is None else
             f"{lat['mean']:.1f} / {lat['p50']:.1f} / {lat['p90']:.1f} s"),
            ("makespan (engines ready at)", f"{s['makespan_s']:.1f} s ({s['ready_s']:.1f} s)"),
            ("accuracy", "–" if s["accuracy"] is None else f"{100 * s['accuracy']:.1f}%")]
    if s.get("skip_rate") is not None:
        rows.append(("aggregator skipped", f"{100 * s['skip_rate']:.1f} %"))
    if s.get("online"):
        rows += online_rows(s)
    if s["n_failed_requests"]:
        rows.append(("FAILED (engines)", f"!!! {s['n_failed_requests']} agent requests, "
                                         f"{s['n_unanswered_queries']} queries left without an answer"))
    if (s.get("solver") or {}).get("fallback"):
        rows.append(("ILP FALLBACK (placement)", f"!!! {s['solver']['fallback']}"))
    rows += [(f"worker {w['id']}", f"{', '.join(w['sessions'])}: busy {w['busy_s']:.0f} s") for w in s["workers"]]
    return "\n".join(f"{k:<31} {v}" for k, v in rows)


def output_files(trace: GraphTrace, placement: dict[int, str], shape: tuple, summary: dict[str, Any]) -> tuple:
    """name -> writer(file), as mosaic/run/app.py writes them (atomically, summary.json last); the
    session rows and each engine's busy spans the timeline is drawn from."""
    from mosaic.run.perfetto import document
    from mosaic.run.timeline import busy_spans

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
    }, session_rows, busy_spans(request_rows)
