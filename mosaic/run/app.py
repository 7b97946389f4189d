"""Turn a resolved config into objects, run the pipeline, and write the run's outputs."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mosaic.core import serde
from mosaic.backends import make_backend
from mosaic.cluster import Cluster
from mosaic.run.metrics import query_rows, run_settings, summary
from mosaic.run.pipeline import PipelineResult, run_pipeline
from mosaic.profiles import load_profiles
from mosaic.analysis.paper_table import write_csv
from mosaic.schedulers import SchedulerParams, get_scheduler
from mosaic.trace import requests_csv, sessions_csv
from mosaic.config.validation import validate
from mosaic.workload.build import build_workload


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOutput:
    summary: dict[str, Any]
    result: PipelineResult


def run(cfg: DictConfig) -> RunOutput:
    c = OmegaConf.to_container(cfg, resolve=True)
    sch, wl_cfg, cl, agg = c["scheduler"], c["workload"], c["cluster"], c["aggregation"]
    get_scheduler(sch["name"])  # fail on a typo before generating anything
    # Validated on construction (one-line ConfigErrors), also before any work is done.
    params = SchedulerParams(**{k: v for k, v in sch.items() if k in SchedulerParams.__dataclass_fields__})
    policy = validate(c)
    cluster = Cluster.uniform(cl["n_workers"], cl["memory_gib"], cl.get("device", "A100-80GB"))
    profiles = load_profiles(wl_cfg["profiles"])
    # The backend first: a missing engine (vLLM not installed) must fail before any work is done.
    backend = make_backend(c["backend"]["name"], cluster, profiles, models=c.get("models"),
                           **c["backend"].get("options", {}))
    workload = build_workload(wl_cfg, profiles, c["seed"])
    result = run_pipeline(workload, cluster, profiles, sch["name"], params, backend, policy,
                          cost_model=sch.get("cost_model", "auto"), placement=agg.get("placement") or "tp",
                          shard_cost=sch.get("shard_cost") or "proportional")
    aggregation = {"name": agg.get("name"), "policy": policy.name, "tau": policy.tau}
    s = summary(result, sch["name"], c["backend"]["name"], wl_cfg["name"], c["seed"], aggregation)
    s["settings"] = run_settings(c)
    s["data_report"] = serde.to_dict(workload.data_report)
    if workload.data_report is not None:
        for problem in workload.data_report.problems():
            log.warning("data quality (%s): %s", wl_cfg["name"], problem)
    return RunOutput(s, result)


def write_outputs(out: RunOutput, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "summary.json").write_text(json.dumps(out.summary, indent=2) + "\n")
    plans = {"expert": serde.to_dict(out.result.expert.plan),
             "aggregator": serde.to_dict(out.result.aggregator.plan)}
    (directory / "plan.json").write_text(json.dumps(plans, indent=1) + "\n")
    traces = [out.result.expert.trace, out.result.aggregator.trace]
    (directory / "trace.csv").write_text(requests_csv(traces))
    (directory / "sessions.csv").write_text(sessions_csv(traces))
    write_csv(directory / "queries.csv", query_rows(out.result))


def format_table(s: dict[str, Any]) -> str:
    rows = [("scheduler", s["scheduler"]), ("workload", f"{s['workload']} (seed {s['seed']})"),
            ("queries / expert requests", f"{s['n_queries']} / {s['n_expert_requests']}"),
            ("expert stage", f"{s['expert_stage_s']:.1f} s"),
            ("aggregator stage", f"{s['aggregator_stage_s']:.1f} s ({s['n_aggregator_requests']} requests)"),
            ("end to end", f"{s['end_to_end_s']:.1f} s"),
            ("aggregator skipped", f"{100 * s['skip_rate']:.1f} %"),
            ("failed requests", str(s["n_failed_requests"])),
            ("accuracy (always aggregate)", f"{100 * s['accuracy']:.2f} % ("
             + (f"{100 * s['accuracy_always_aggregate']:.2f} %" if s["accuracy_always_aggregate"] is not None else "n/a") + ")")]
    if s["solver"]:
        sv = s["solver"]
        rows.append(("ILP", f"{sv['status']}, {sv['solve_s']:.2f} s, gap {sv['gap'] or 0:.2%}"
                     + (f", plan from {sv['source']}" if sv.get("source", "ilp") != "ilp" else "")))
        if sv.get("fallback"):
            rows.append(("ILP FALLBACK", f"!!! {sv['fallback']}"))
    for w in s["workers"]:
        rows.append((f"worker {w['id']}", f"busy {w['busy_s']:.0f} s, idle {w['idle_s']:.0f} s: "
                     + " > ".join(w["sessions"])))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
