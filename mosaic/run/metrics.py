"""Metrics over Traces and pipeline results: stage times, skip rate, accuracy, per-worker use."""
from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from mosaic.run.pipeline import PipelineResult
from mosaic.run.serving import query_completion, stage_serving
from mosaic.plan import Plan
from mosaic.config.schema import MosaicConfig
from mosaic.workload.types import aggregator_request_id


def accuracy(final: dict[str, str | None], gold: dict[str, str]) -> float:
    return sum(final[q] == g for q, g in gold.items()) / len(gold) if gold else 0.0


def accuracy_always_aggregate(result: PipelineResult) -> float | None:
    """Accuracy had the aggregator run on every query; known only when the workload replays the
    aggregator's answer for every query."""
    wl = result.workload
    outcomes = [wl.outcomes.get(aggregator_request_id(q.id)) for q in wl.queries]
    if any(o is None for o in outcomes):
        return None
    return sum(o.answer == q.gold for o, q in zip(outcomes, wl.queries)) / len(wl.queries)


def solver_info(plan: Plan) -> dict[str, Any] | None:
    if plan.solver is None:
        return None
    s = plan.solver
    return {"status": s.status, "solve_s": s.solve_s, "objective": s.objective,
            "bound": s.bound, "gap": s.gap, "source": s.source, "fallback": s.fallback,
            "limit": s.limit, "greedy_objective": s.greedy_objective,
            "node_limit": plan.params.get("node_limit")}


def query_rows(result: PipelineResult) -> list[dict[str, Any]]:
    """One row per query: the agreement decision, the final answer and, where the workload replays
    it, the answer the aggregator would have given (so any tau can be evaluated afterwards)."""
    wl = result.workload
    by_id = {q.id: q for q in wl.queries}
    # Fig. 7 (length vs agreement) needs each question's total expert output.
    expert_tokens: dict[str, int] = defaultdict(int)
    for r in result.expert.trace.requests:
        expert_tokens[r.query_id] += r.output_tokens
    rows = []
    for d in result.decisions:
        q = by_id[d.query_id]
        agg = wl.outcomes.get(aggregator_request_id(q.id))
        rows.append({"query_id": q.id, "category": q.category, "gold": q.gold, "experts": "+".join(q.experts),
                     "agreement": round(d.agreement, 6), "majority": d.majority or "", "skipped": int(d.skip),
                     "final_answer": result.final_answers[q.id] or "",
                     "aggregator_answer": (agg.answer or "") if agg else "",
                     "expert_output_tokens": expert_tokens[q.id]})
    return rows


def summary(result: PipelineResult, scheduler: str, backend: str, workload_name: str,
            seed: int, aggregation: dict[str, Any] | None = None, runtime: str = "static") -> dict[str, Any]:
    wl = result.workload
    exp_t, agg_t = result.expert.trace, result.aggregator.trace
    gold = {q.id: q.gold for q in wl.queries}
    workers = []
    for ws_e, ws_a in zip(exp_t.workers, agg_t.workers):
        sessions = [s.model for t in (exp_t, agg_t) for s in t.sessions if s.worker == ws_e.worker]
        # The first `expert_sessions` of `sessions` are the expert stage's, the rest the aggregator's.
        workers.append({"id": ws_e.worker, "busy_s": ws_e.busy_s + ws_a.busy_s,
                        "idle_s": ws_e.idle_s + ws_a.idle_s, "sessions": sessions,
                        "expert_sessions": sum(s.worker == ws_e.worker for s in exp_t.sessions)})
    n_skipped = sum(d.skip for d in result.decisions)
    return {
        "scheduler": scheduler,
        "backend": backend,
        "runtime": runtime,
        # Replicas the runtime loaded mid-run, beyond the plan's sessions (runtime=pull).
        "replicas_added": {"expert": sum(s.added for s in exp_t.sessions),
                           "aggregator": sum(s.added for s in agg_t.sessions)},
        "workload": workload_name,
        "aggregation": aggregation,
        "seed": seed,
        "n_queries": len(wl.queries),
        "n_expert_requests": len(exp_t.requests),
        "n_aggregator_requests": len(agg_t.requests),
        # A real backend reports a request it could not serve (e.g. its engine did not start) with
        # an error instead of dropping it; its expert answer counts as no vote.
        "n_failed_requests": sum(r.error is not None for t in (exp_t, agg_t) for r in t.requests),
        "first_request_error": next((r.error for t in (exp_t, agg_t) for r in t.requests if r.error), None),
        "expert_stage_s": exp_t.makespan_s,
        "aggregator_stage_s": agg_t.makespan_s,
        "end_to_end_s": exp_t.makespan_s + agg_t.makespan_s,
        "skip_rate": n_skipped / len(wl.queries),
        "accuracy": accuracy(result.final_answers, gold),
        "accuracy_always_aggregate": accuracy_always_aggregate(result),
        "expert_predicted_makespan_s": result.expert.plan.predicted_makespan_s,
        "expert_lower_bound_s": result.expert.problem.lower_bound_s,
        "workers": workers,
        "solver": solver_info(result.expert.plan),
        "aggregator_solver": solver_info(result.aggregator.plan),
        # "tp": one tensor-parallel aggregator engine over all workers; "scheduled": placed by the
        # stage's scheduler. tp_mode says how a real backend ran the TP engine.
        "aggregator_placement": result.placement,
        "aggregator_tp_size": max((s.tp_size for s in agg_t.sessions), default=1),
        "aggregator_tp_mode": next((s.tp_mode for s in agg_t.sessions if s.tp_mode), ""),
        # Table 3 (slots per expert) reads this.
        "expert_requests_per_model": dict(sorted(Counter(r.model for r in exp_t.requests).items())),
        # TTFT, TPOT, latency percentiles, tokens/s per GPU (mosaic/run/serving.py: time origins).
        "serving": {"expert": stage_serving(exp_t, len(exp_t.workers)),
                    "aggregator": stage_serving(agg_t, len(agg_t.workers)),
                    "query_completion_s": query_completion(exp_t, agg_t,
                                                           {d.query_id: d.skip for d in result.decisions})},
    }


# The runs table's setting columns and the config fields they come from.
SETTING_FIELDS = {"K": "scheduler.max_models_per_worker", "rr_order": "scheduler.rr_order",
                  "routing": "workload.routing", "replacement": "workload.replacement",
                  "placement": "aggregation.placement", "coupling": "workload.coupling",
                  "shard_cost": "scheduler.shard_cost"}


def run_settings(c: MosaicConfig, not_applied: tuple[str, ...] | list[str] = ()) -> dict[str, Any]:
    """The experiment settings a run used (the ones the paper's table tells variants apart by). A
    setting in `not_applied` (set, but never read by the run's policy or source) is recorded as
    None, so a table cannot tell runs apart by something that did not change them."""
    out = {}
    for key, path in SETTING_FIELDS.items():
        section, name = path.split(".")
        value = getattr(getattr(c, section), name)
        out[key] = None if path in not_applied else bool(value) if key == "replacement" else value
    return out
