"""Run one MoA workload from its config and write the run's outputs (the CLI's body)."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from omegaconf import DictConfig

from mosaic.config.defaults import changed
from mosaic.config.schema import MosaicConfig
from mosaic.core import serde
from mosaic.core.tables import write_csv
from mosaic.profiles.calibration import calibrated_yaml
from mosaic.run.builder import Run, build_run
from mosaic.core.rundir import CALIBRATED_PROFILE_FILE, OUTPUT_FILES, SUMMARY_FILE, write_atomic
from mosaic.run import timeline
from mosaic.run.perfetto import PERFETTO_FILE, document as perfetto_document
from mosaic.schedulers.registry import not_applied as scheduler_not_applied
from mosaic.runtime.settings import not_applied as runtime_not_applied
from mosaic.run.metrics import query_rows, run_settings, summary
from mosaic.run.serving import percentiles_text
from mosaic.run.pipeline import PipelineResult
from mosaic.trace import requests_csv, sessions_csv
from mosaic.workload.sources import not_applied as workload_not_applied
from mosaic.core.rundir import graph_run

log = logging.getLogger(__name__)


def settings_not_applied(c: MosaicConfig, engine=None) -> list[str]:
    out = scheduler_not_applied(c.scheduler) + workload_not_applied(c.workload) + runtime_not_applied(c)
    return out + (cluster_not_applied(c, engine) if engine is not None else []) + models_not_applied(c)




def cluster_not_applied(c: MosaicConfig, engine) -> list[str]:
    # Workers sharing a host slow each other only as the profile measured it; without a measurement
    # the setting changes nothing.
    return ["cluster.workers_per_host"] if c.cluster.workers_per_host != 1 and engine.host_contention is None else []


def models_not_applied(c: MosaicConfig) -> list[str]:
    """The model registry (models=...) starts real engines (a calibration's too); the simulator
    runs the profiles."""
    return changed("models", c.models) if c.backend.name == "sim" and not c.workload.calibrate else []


def setting_value(c: MosaicConfig, dotted: str) -> Any:
    value: Any = c
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else getattr(value, part, None)
    return value


def warn_not_applied(c: MosaicConfig, names: list[str]) -> None:
    """One warning per setting the run was given and does not read, naming what ignores it."""
    for name in names:
        section = name.split(".", 1)[0]
        if section == "models":
            why = "backend sim runs the profiles and does not read it (models= lists backend=vllm's engines)"
        elif section == "cluster":
            why = (f"the profiles '{c.workload.profiles}' measured no engine.host_contention "
                   "(experiments/profile_contention.py)")
        elif section == "slo":
            why = "arrivals=batch has no arrivals to measure latency from (arrivals=poisson|gamma|trace do)"
        elif section == "runtime" and c.arrivals.online():
            why = "an online run keeps every model loaded and routes by the runtime's rule alone"
        elif c.arrivals.online() and c.topology.kind == "flat" and section in ("scheduler", "aggregation"):
            why = ("an online run keeps each model loaded on a worker of its own, the aggregator's included "
                   "(one model per worker)")
        elif c.topology.kind != "flat":
            why = f"topology {c.topology.name} runs an agent graph, not the flat pipeline that reads it"
            if name == "scheduler.max_models_per_worker" and c.topology.placement == "scheduler":
                why = "topology.placement=scheduler places one model per worker"
            elif section == "scheduler":
                why += " (topology.placement=scheduler would place the graph with the scheduler)"
        elif section == "scheduler":
            why = f"scheduler {c.scheduler.name} does not read it"
        elif section == "runtime":
            why = f"runtime {c.runtime.name} does not read it (runtime=pull does)"
        else:
            why = (f"workload kind {c.workload.kind} (routing={c.workload.routing}, "
                   f"replacement={c.workload.replacement}) does not read it")
        log.warning("%s=%s is not applied: %s", name, setting_value(c, name), why)


@dataclass(frozen=True)
class RunOutput:
    summary: dict[str, Any]
    result: PipelineResult | None
    # An agent-graph run (topology dense or tree): (GraphTrace, placement, agents); result is None.
    graph: tuple | None = None
    # workload.calibrate=true: the calibrated profile file (written as profile.calibrated.yaml).
    calibrated: dict[str, Any] | None = None


def calibration_record(r: Run) -> dict[str, Any] | None:
    """Nested (not a runs-table column): where the run's profiles were calibrated to a machine
    (experiments/calibrate_profile.py, or this run's workload.calibrate), their calibration
    sections; None for profiles as measured."""
    out = {key: p.calibration for key, p in (("workload", r.profiles), ("topology", r.graph_profiles))
           if p is not None and p.calibration}
    return out or None


def run(cfg: DictConfig | MosaicConfig) -> RunOutput:
    r = build_run(cfg)
    if r.config.topology.kind != "flat" or r.config.arrivals.online():
        from mosaic.run import graph_app as graphs

        trace, placement, shape = graphs.execute(r)
        s = graphs.summary(r, trace, placement)
        s["settings_not_applied"] = (graphs.not_applied(r.config) + cluster_not_applied(r.config, r.profiles.engine)
                                     + models_not_applied(r.config))
        warn_not_applied(r.config, s["settings_not_applied"])
        s["profile_calibration"] = calibration_record(r)
        if trace.truncated_prompts and r.config.topology.kind == "flat":
            log.warning("%d aggregator prompts were longer than half the context (engine.aggregator_cap, the other "
                        "half is for the answer) and were cut to it (summary.json truncated_prompts)",
                        trace.truncated_prompts)
        elif trace.truncated_prompts:
            log.warning("%d agent prompts were longer than the context window and were cut to fit (their "
                        "inputs' tail dropped; summary.json truncated_prompts)", trace.truncated_prompts)
        if trace.capped_outputs:
            log.warning("%d agent outputs drawn longer than the context left after their prompt were cut to "
                        "it (summary.json capped_outputs)", trace.capped_outputs)
        return RunOutput(s, None, (trace, placement, shape), r.calibrated)
    truncated = r.truncated
    if truncated:
        log.warning("workload.oversize=truncate: %d requests cut to fit the engine (e.g. %s)", len(truncated),
                    ", ".join(truncated[:3]))
    c, workload = r.config, r.workload
    result = r.execute()
    aggregation = {"name": c.aggregation.name, "policy": c.aggregation.policy, "tau": c.aggregation.tau}
    s = summary(result, c.scheduler.name, c.backend.name, c.workload.name, c.seed, aggregation, c.runtime.name)
    # Set, but never read by this policy or workload source (round robin ignores K, fifo the
    # replication cap, a synthetic workload the question files, ...).
    s["settings_not_applied"] = settings_not_applied(c, r.profiles.engine)
    s["settings"] = run_settings(c, s["settings_not_applied"])
    warn_not_applied(c, s["settings_not_applied"])
    s["profile_calibration"] = calibration_record(r)
    tp = s["aggregator_tp_size"]
    # Nested (not a runs-table column): whether the TP aggregator's step speedup was measured for
    # this degree or derived by the profile's scaling model (mosaic/profiles/engine.py).
    scaling = r.profiles.model(r.workload.aggregator).tp(r.profiles.engine, tp) if tp > 1 else None
    speedup = scaling.speedup(tp) if scaling is not None else None
    s["aggregator_tp_scaling"] = None if scaling is None else {
        "degree": tp, "speedup": speedup, "token_speedup": scaling.work_speedup(tp),
        "source": scaling.speedup_source(tp), "measured_on": ("the aggregator model" if scaling is not
                                                              r.profiles.engine.tensor_parallel else "the engine")}
    if scaling is not None and speedup < 1:
        # The run is what was asked for, but a user reading its aggregator stage should know why.
        log.warning("the aggregator ran as one TP-%d engine whose step speedup is %.3g (%s): slower than one "
                    "worker; aggregation.placement=scheduled runs it on workers instead", tp,
                    speedup, scaling.speedup_source(tp))
    # Nested (not a runs-table column): how the simulated engine scheduled steps (profile or config).
    e = r.profiles.engine
    s["engine"] = {"scheduling": e.scheduling, "block_size": e.block_size, "prefix_caching": e.prefix_caching,
                   "num_gpu_blocks": e.num_gpu_blocks}
    # Nested (not a runs-table column): requests cut to fit with workload.oversize=truncate.
    s["admission"] = {"oversize": c.workload.oversize, "truncated_requests": len(truncated),
                      "aggregator_prompts_cut": len(result.aggregator_prompts_cut)}
    # Said once, as a count in the console summary (format_table), not as a warning before it.
    s["aggregator_prompt_cap"] = r.profiles.engine.aggregator_cap
    s["data_report"] = serde.to_dict(workload.data_report)
    if workload.data_report is not None:
        for problem in workload.data_report.problems():
            log.warning("data quality (%s): %s", c.workload.name, problem)
    return RunOutput(s, result, calibrated=r.calibrated)


def write_outputs(out: RunOutput, directory: Path) -> None:
    """Write the run's files into `directory`, each atomically (mosaic/core/rundir.py: write_atomic)
    and summary.json last: an error or a signal part-way leaves no summary.json, so a directory
    with one holds a finished run."""
    directory.mkdir(parents=True, exist_ok=True)
    if out.graph is not None:
        from mosaic.run import graph_app as graphs

        files, session_rows, activity = graphs.output_files(*out.graph, out.summary)
    else:
        activity = None
        plans = {"expert": serde.to_dict(out.result.expert.plan),
                 "aggregator": serde.to_dict(out.result.aggregator.plan)}
        traces = [out.result.expert.trace, out.result.aggregator.trace]
        # As sessions.csv holds them: the trace and the timeline are drawn from these rows.
        session_rows = [dict(serde.to_dict(s), stage=t.stage) for t in traces for s in t.sessions]
        files = {"plan.json": lambda f: _json(f, plans, 1),
                 "trace.csv": lambda f: f.write(requests_csv(traces)),
                 "sessions.csv": lambda f: f.write(sessions_csv(traces)),
                 "queries.csv": lambda f: write_csv(f, query_rows(out.result)),
                 PERFETTO_FILE: lambda f: json.dump(perfetto_document(
                     [serde.to_dict(r) for t in traces for r in t.requests], session_rows,
                     out.result.expert.trace.makespan_s), f),
                 SUMMARY_FILE: lambda f: _json(f, out.summary, 2)}
    assert tuple(files) == OUTPUT_FILES and OUTPUT_FILES[-1] == SUMMARY_FILE
    if out.calibrated is not None:   # a profile any later run can name in workload.profiles
        write_atomic(directory / CALIBRATED_PROFILE_FILE, lambda f: f.write(calibrated_yaml(out.calibrated)))
    for name, write in files.items():
        if name == SUMMARY_FILE:
            # The picture before summary.json too: a signal while it is drawn leaves a run that
            # did not finish (no summary.json), not a finished one beside an error.json.
            _draw(directory, session_rows, out.summary, activity)
        write_atomic(directory / name, write)


def _draw(directory: Path, session_rows: list[dict[str, Any]], summary: dict[str, Any], activity=None) -> None:
    try:   # a picture of the run; never a reason to fail a run whose results are written
        timeline.write(directory, session_rows, summary, activity=activity)
    except Exception as e:  # noqa: BLE001
        log.warning("timeline.png not drawn: %s", e)


STATUS_WORDS = {"heuristic": "its search's best plan", "optimal": "optimal", "empty": "nothing to plan"}


def plan_words(policy: str, sv: dict[str, Any]) -> str:
    """The plan's solver record in words: how it ended, how long it took, what it predicts."""
    out = f"{policy}, {STATUS_WORDS.get(sv['status'], sv['status'].replace('_', ' '))}, planned in {sv['solve_s']:.2f} s"
    if sv.get("objective") is not None:
        out += f"; predicted {sv['objective']:.0f} s"
        if sv.get("bound") is not None and sv.get("gap") is not None:
            out += f", at most {sv['gap']:.1%} above the optimum's lower bound ({sv['bound']:.0f} s)"
    if sv.get("source") not in (None, "ilp", "path"):
        out += f" (the plan of its {sv['source']} start)"
    return out


def _json(f: IO[str], obj: Any, indent: int) -> None:
    json.dump(serde.strict_json(obj), f, indent=indent, allow_nan=False)
    f.write("\n")


def format_table(s: dict[str, Any]) -> str:
    if graph_run(s):
        from mosaic.run.graph_app import format_table as graph_table
        return graph_table(s)
    rows = [("scheduler", s["scheduler"]), ("workload", f"{s['workload']} (seed {s['seed']})"),
            ("queries / expert requests", f"{s['n_queries']} / {s['n_expert_requests']}"),
            ("expert stage", f"{s['expert_stage_s']:.1f} s"),
            ("aggregator stage", f"{s['aggregator_stage_s']:.1f} s ({s['n_aggregator_requests']} requests)"),
            ("end to end", f"{s['end_to_end_s']:.1f} s"),
            ("aggregator skipped", f"{100 * s['skip_rate']:.1f} %"),
            ("failed requests", str(s["n_failed_requests"])),
            ("accuracy", f"{100 * s['accuracy']:.2f} %" + (
                f" ({100 * s['accuracy_always_aggregate']:.2f} % had every question been aggregated)"
                if s["accuracy_always_aggregate"] is not None else ""))]
    cut = (s.get("admission") or {}).get("aggregator_prompts_cut")
    if cut:
        rows.append(("aggregator prompts cut", f"{cut} of {s['n_aggregator_requests']} to {s['aggregator_prompt_cap']} "
                     "tokens (half of the profile's engine.max_model_len; the other half is for the answer)"))
    if s["solver"]:
        rows.append(("expert plan", plan_words(s["scheduler"], s["solver"])))
        sv = s["solver"]
        if sv.get("fallback"):
            rows.append(("ILP FALLBACK", f"!!! {sv['fallback']}"))
    if s.get("runtime", "static") != "static":
        added = s.get("replicas_added") or {}
        rows.append(("runtime", f"{s['runtime']}: requests bound to replicas as they had room; replicas added "
                     f"mid-run: {added.get('expert', 0)} expert, {added.get('aggregator', 0)} aggregator"
                     if s["runtime"] == "pull" else f"{s['runtime']}: each request routed to a replica when released"))
    if (s.get("aggregator_solver") or {}).get("fallback"):   # a scheduled aggregator's own solve
        rows.append(("ILP FALLBACK (aggregator)", f"!!! {s['aggregator_solver']['fallback']}"))
    serving = s.get("serving")
    if serving:
        for stage in ("expert", "aggregator"):
            st = serving[stage]
            if st["requests"]:
                rows.append((f"{stage} latency p50/p90/p99", percentiles_text(st["latency_s"]) + f"; TTFT {percentiles_text(st['ttft_s'])}; "
                             f"TPOT {percentiles_text(st['tpot_s'], 1e3, 'ms')}"))
        rows.append(("query done p50/p90/p99", percentiles_text(serving["query_completion_s"])))
        rows.append(("output tokens/s per GPU", ", ".join(
            f"{stage} {serving[stage]['output_tokens_per_s_per_gpu']:.1f}" for stage in ("expert", "aggregator")
            if serving[stage]["output_tokens_per_s_per_gpu"] is not None)))
    tp = s.get("aggregator_placement") == "tp" and s.get("aggregator_tp_size", 1) > 1
    for w in s["workers"]:
        n = w.get("expert_sessions", len(w["sessions"]))
        expert, agg = w["sessions"][:n], w["sessions"][n:]
        said = " > ".join(expert) or "no expert session"
        if agg:   # the aggregator stage's sessions; a TP aggregator is one engine over every worker
            said += (f"; aggregator {agg[0]} (one TP-{s['aggregator_tp_size']} engine over all workers)" if tp
                     else f"; aggregator {' > '.join(agg)}")
        rows.append((f"worker {w['id']}", f"busy {w['busy_s']:.0f} s, idle {w['idle_s']:.0f} s: {said}"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
