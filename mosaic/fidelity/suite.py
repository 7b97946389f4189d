"""The simulator fidelity suite: cases (mosaic/conf/fidelity.yaml) whose plans run on backend=sim and,
`repeats` times, on the real engine; per case and stage the serving metrics of both, the real
engine's run-to-run spread, and the simulator's error against the real median.

Metrics of one stage run (`stage_metrics`): makespan; serving = the busiest worker's time inside
engines (session run time summed, so start-up, load and unload are excluded); mean load;
throughput = output tokens per second of makespan; TTFT and end-to-end latency (first token and
finish, from the start of the request's session's serving, as every request of a session is
submitted then) at p50/p90/p99; preemptions. The spread of a real metric is half its range over
the repeats, relative to its median: an error within it is within the engine's own noise.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mosaic.core.errors import ConfigError
from mosaic.plan import Plan, Session, WorkerPlan
from mosaic.run.aggregation import decide
from mosaic.run.builder import Run, build_run, compose
from mosaic.core.rundir import MAX_VALUE
from mosaic.run.pipeline import aggregator_requests
from mosaic.trace import Trace
from mosaic.workload.types import Outcome, Request

ROOT = Path(__file__).resolve().parents[2]
SUITE = Path(__file__).resolve().parents[1] / "conf" / "fidelity.yaml"
OUT = ROOT / "results"   # where reports go unless --out says otherwise
PCTS = (50, 90, 99)
# Metrics compared sim vs real, with the direction-free relative error reported for each.
COMPARED = ("makespan_s", "serving_s", "throughput_tok_s",
            *(f"ttft_p{q}_s" for q in PCTS), *(f"e2e_p{q}_s" for q in PCTS))


class SessionSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    worker: int = Field(ge=0)
    model: str
    requests: int = Field(ge=1, le=100_000)
    prompt: tuple[int, int]
    output: tuple[int, int]

    @field_validator("prompt", "output")
    @classmethod
    def _range(cls, v: tuple[int, int]) -> tuple[int, int]:
        if not 1 <= v[0] <= v[1]:
            raise ValueError(f"expected [lo, hi] with 1 <= lo <= hi, got {list(v)}")
        return v


class CaseSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    about: str = ""
    overrides: list[str] = []
    seed: int = 0
    stages: list[str] | None = None
    sessions: list[SessionSpec] | None = None
    # An agent graph (its topology in `overrides`): the whole run on both backends, queries
    # released as the graph releases them; E2E = per-query latency, TTFT = an agent request's
    # first token from its release.
    graph: bool = False

    @field_validator("stages")
    @classmethod
    def _stages(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and (not v or set(v) - {"expert", "aggregator"} or v[0] != "expert"):
            raise ValueError(f"expected [expert] or [expert, aggregator], got {v}")
        return v


class SuiteSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base: list[str] = []
    repeats: int = Field(default=3, ge=1, le=100)
    cases: dict[str, CaseSpec]


def load_suite(path: Path = SUITE) -> SuiteSpec:
    """The suite file, validated; an error names the file, the case and the field."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
        suite = SuiteSpec.model_validate(raw)
    except OSError as e:
        raise ConfigError(f"fidelity suite {path}: cannot read it ({e.strerror})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"fidelity suite {path}: not valid YAML ({' '.join(str(e).split())[:200]})") from None
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"fidelity suite {path}: {where}: {err['msg']}") from None
    for name, case in suite.cases.items():
        if [case.stages is not None, case.sessions is not None, case.graph].count(True) != 1:
            raise ConfigError(f"fidelity suite {path}: cases.{name}: give exactly one of `stages` (the MoA "
                              "pipeline), `sessions` (an explicit plan) or `graph: true` (an agent graph, its "
                              "topology in `overrides`)")
    return suite


# ---------------------------------------------------------------- one stage run's metrics

def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def stage_metrics(trace: Trace) -> dict[str, Any]:
    run_start = {(s.worker, s.index): s.run_start_s for s in trace.sessions}
    ok = [r for r in trace.requests if r.error is None]
    e2e = [r.finish_s - run_start[(r.worker, r.session)] for r in ok]
    ttft = [r.first_token_s - run_start[(r.worker, r.session)] for r in ok]
    busy: dict[int, float] = {}
    for s in trace.sessions:
        busy[s.worker] = busy.get(s.worker, 0.0) + (s.run_end_s - s.run_start_s)
    return _metrics(trace, {"requests": len(trace.requests), "failed": len(trace.requests) - len(ok)},
                    max(busy.values(), default=0.0), sum(r.output_tokens for r in ok), ttft, e2e,
                    # None when a backend could not count them (vLLM without its per-step statistics)
                    None if any(s.preemptions is None for s in trace.sessions)
                    else sum(s.preemptions for s in trace.sessions))


def _metrics(trace, counts: dict[str, int], serving_s: float, tokens: int, ttft: list[float], e2e: list[float],
             preemptions: int | None) -> dict[str, Any]:
    """The keys both kinds of run report, in one order."""
    loads = [s.load_end_s - s.load_start_s for s in trace.sessions]
    m = {**counts, "makespan_s": trace.makespan_s, "serving_s": serving_s,
         "mean_load_s": float(np.mean(loads)) if loads else 0.0,
         "throughput_tok_s": tokens / trace.makespan_s if trace.makespan_s else 0.0,
         "preemptions": preemptions,
         # per session, to see where a stage's time went (who ran alone, whose load was slow)
         "sessions": [{"worker": s.worker, "model": s.model, "load_s": [s.load_start_s, s.load_end_s],
                       "run_s": [s.run_start_s, s.run_end_s]} for s in trace.sessions]}
    for q in PCTS:
        m[f"ttft_p{q}_s"] = _pct(ttft, q)
        m[f"e2e_p{q}_s"] = _pct(e2e, q)
    return m


def graph_metrics(trace) -> dict[str, Any]:
    """stage_metrics' keys for an agent-graph run (a GraphTrace): serving = the time after every
    engine was loaded; E2E = per-query latency; TTFT = an agent request's first token from its
    release (its precursors done)."""
    served = [r for r in trace.requests if r.status == "served"]
    ttft = [r.first_token_s - r.release_s for r in served if r.first_token_s is not None and r.release_s is not None]
    e2e = [q.latency_s for q in trace.queries]
    counts = {"requests": len(trace.requests), "failed": 0, "cancelled": len(trace.requests) - len(served)}
    return _metrics(trace, counts, trace.makespan_s - trace.ready_s, sum(r.output_tokens for r in served),
                    ttft, e2e, None)


def same_requests(sim: Trace, real: Trace) -> Trace:
    """`real`, once checked to hold the simulated trace's requests (both ran one plan)."""
    a, b = {r.request_id for r in sim.requests}, {r.request_id for r in real.requests}
    if a != b:
        raise ValueError(f"the two traces cover different requests ({len(a ^ b)} differ, e.g. "
                         f"{sorted(a ^ b)[:3]}): they must come from the same plan")
    return real


def against(sim: float, reals: list[float]) -> tuple[float, float, float]:
    """One simulated value against its real repeats: (real median, spread = half the range relative
    to the median, sim error relative to the median)."""
    med = float(np.median(reals))
    spread = (max(reals) - min(reals)) / 2 / med if med else 0.0
    return med, spread, (sim - med) / med if med else (0.0 if sim == med else float("inf"))


def compare(sim: dict[str, Any], reals: list[dict[str, Any]]) -> dict[str, Any]:
    """The simulated metrics against the real repeats: real median, spread, sim error."""
    out: dict[str, Any] = {"sim": sim, "real": reals, "real_median": {}, "real_spread": {}, "error": {}}
    for k in (*COMPARED, "mean_load_s"):
        out["real_median"][k], out["real_spread"][k], out["error"][k] = against(sim[k], [r[k] for r in reals])
    return out


# ---------------------------------------------------------------- cases

@dataclass(frozen=True)
class StageJob:
    """One plan to run on both backends."""
    stage: str
    plan: Plan
    requests: dict[str, Request]
    replay: dict[str, Outcome]


@dataclass(frozen=True)
class GraphJob:
    """An agent-graph run (topology dense or tree) to run on both backends: the same graph, seed
    and replayed lengths; each backend places it alike (the placement is a function of the config)."""
    stage: str
    requests: dict[str, Any]   # request id -> None: the graph's agent requests, to check both ran them all


def session_jobs(case: CaseSpec, run: Run) -> list[StageJob]:
    """An explicit plan: per worker its sessions in file order, lengths drawn with the case's seed."""
    rng = np.random.default_rng(case.seed)
    n = run.cluster.n
    known = set(run.profiles.models)
    per_worker: dict[int, list[Session]] = {w: [] for w in range(n)}
    requests: dict[str, Request] = {}
    replay: dict[str, Outcome] = {}
    room = run.profiles.engine.max_model_len
    for j, s in enumerate(case.sessions or ()):
        if s.worker >= n:
            raise ConfigError(f"sessions[{j}].worker={s.worker} but the cluster has {n} workers")
        if s.model not in known:
            raise ConfigError(f"sessions[{j}].model={s.model} has no profile; known: {sorted(known)}")
        if s.prompt[1] > room // 2 or s.prompt[1] + s.output[1] > room:
            raise ConfigError(f"sessions[{j}]: prompt up to {s.prompt[1]} and output up to "
                              f"{s.output[1]} do not fit max_model_len {room} (prompt <= {room // 2})")
        prompts = rng.integers(s.prompt[0], s.prompt[1] + 1, s.requests)
        outputs = rng.integers(s.output[0], s.output[1] + 1, s.requests)
        ids = []
        for i in range(s.requests):
            rid = f"c{j}-{s.model}-{i}"
            requests[rid] = Request(rid, rid, s.model, int(prompts[i]), "expert")
            replay[rid] = Outcome(int(outputs[i]), None)
            ids.append(rid)
        per_worker[s.worker].append(Session(s.model, tuple(ids)))
    plan = Plan("expert", "fidelity", tuple(WorkerPlan(w, tuple(ss)) for w, ss in per_worker.items()))
    return [StageJob("expert", plan, requests, replay)]


def _outcomes(run: Run, reqs: list[Request]) -> dict[str, Outcome]:
    return {r.id: run.workload.outcomes[r.id] for r in reqs}


def sim_overrides(overrides: Sequence[str]) -> list[str]:
    """A case's overrides for its simulated side: backend=sim, without the real backend's own options
    (e.g. backend.options.cpu_confine), which the simulator's backend group does not have."""
    return [o for o in overrides if not o.lstrip("+~").startswith("backend.")] + ["backend=sim"]


def prepare_case(name: str, case: CaseSpec, base: Sequence[str]) -> tuple[Run, list[tuple[StageJob, Trace]]]:
    """Build the case's run and its stage plans, each simulated: every error a case can raise
    (config, lengths, plan) comes out here, before any real engine starts."""
    run = build_run(compose([*base, *case.overrides, f"seed={case.seed}"]))
    if case.graph:
        from mosaic.run import graph_app as graph_run

        if run.config.topology.kind == "flat":
            raise ConfigError("graph: true needs an agent-graph topology in overrides (e.g. topology=tree)")
        sim_run = build_run(compose(sim_overrides([*base, *case.overrides, f"seed={case.seed}"])))
        trace, _, _ = graph_run.execute(sim_run)
        t = run.config.topology
        job = GraphJob(f"graph ({t.name}, concurrency {t.concurrency})", dict.fromkeys(r.request_id for r in trace.requests))
        return run, [(job, trace)]
    sim = run.other_backend("sim")
    if case.sessions is not None:
        return run, [(job, sim.run(job.plan, job.requests, job.replay)) for job in session_jobs(case, run)]
    w = run.workload
    expert = list(w.expert_requests())
    _, plan = run.plan("expert", expert, w.expert_models, "scheduled")
    job = StageJob("expert", plan, {r.id: r for r in expert}, _outcomes(run, expert))
    out = [(job, sim.run(job.plan, job.requests, job.replay))]
    if "aggregator" in (case.stages or ()):
        answers: dict[str, list[str | None]] = {q.id: [] for q in w.queries}
        for r in out[0][1].requests:
            answers[r.query_id].append(r.answer)
        run_ids = {d.query_id for d in decide(run.config.aggregation, answers) if not d.skip}
        agg, _ = aggregator_requests(w, out[0][1], run_ids, run.profiles.engine.aggregator_cap)
        if agg:
            placement = run.config.aggregation.placement
            _, plan = run.plan("aggregator", agg, (w.aggregator,), placement)
            job = StageJob(f"aggregator ({placement})", plan, {r.id: r for r in agg}, _outcomes(run, agg))
            out.append((job, sim.run(job.plan, job.requests, job.replay)))
    return run, out


def run_case(name: str, run: Run, jobs: list[tuple[StageJob, Trace]], repeats: int,
             log=print) -> list[dict[str, Any]]:
    """Each prepared stage `repeats` times on the real engine; one row per stage."""
    rows = []
    for job, simulated in jobs:
        reals = []
        for i in range(repeats):
            t0 = time.time()
            reals.append(_real_run(run, job, simulated))
            log(f"{name} / {job.stage}: real run {i + 1}/{repeats} took {time.time() - t0:.0f} s")
        metrics = graph_metrics if isinstance(job, GraphJob) else stage_metrics
        rows.append({"case": name, "stage": job.stage,
                     **compare(metrics(simulated), [metrics(t) for t in reals])})
    return rows


def _real_run(run: Run, job: StageJob | GraphJob, simulated):
    if isinstance(job, StageJob):
        return same_requests(simulated, run.backend.run(job.plan, job.requests, job.replay))
    from mosaic.run import graph_app as graph_run

    trace, _, _ = graph_run.execute(run)
    got = {r.request_id for r in trace.requests}
    if got != set(job.requests):
        raise ValueError(f"the real graph run covers other requests than the simulated one ({len(got ^ set(job.requests))} "
                         "differ): the two must run one graph")
    return trace


# ---------------------------------------------------------------- the table

def _same_profile(check: dict[str, Any], profiles: str) -> bool:
    from mosaic.fidelity.calibrate import checked_path
    from mosaic.profiles.loader import profile_path

    try:
        return checked_path(check).resolve() == profile_path(profiles).resolve()
    except ConfigError:
        return False


def drift_corrected(run: Run, job: StageJob | GraphJob, simulated, checks: list[dict[str, Any]],
                    case: CaseSpec | None = None, base: Sequence[str] = ()) -> dict[str, Any] | None:
    """The stage's simulated metrics on its profile calibrated to the host as `checks` measured it
    just before the case (mosaic/profiles/calibration.py): the simulator's prediction for the
    machine as it was that hour, so that what is left of the error is the simulator's, not the
    host's drift. None where no check covers the stage's profile, or where the calibrated profile
    places an agent graph otherwise than the real runs were placed."""
    import tempfile

    from mosaic.fidelity.calibrate import calibrated_from, checked_path, write_calibrated
    from mosaic.profiles import parse_profiles
    from mosaic.run.builder import engine_settings

    graph = isinstance(job, GraphJob)
    key = run.config.topology.profiles if graph and run.config.topology.profiles else run.config.workload.profiles
    check = next((c for c in checks if _same_profile(c, key)), None)
    if check is None:
        return None
    raw = calibrated_from(check)
    if not graph:
        # parsed from the base profile's folder, where its relative paths (kernels) start
        profiles = parse_profiles(raw, "the calibrated profile", checked_path(check).parent)
        sim = replace(run, profiles=engine_settings(profiles, run.config.engine)).other_backend("sim")
        return stage_metrics(sim.run(job.plan, job.requests, job.replay))
    from mosaic.run import graph_app as graph_run

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "calibrated.yaml"
        write_calibrated(raw, path)
        which = "topology.profiles" if run.config.topology.profiles else "workload.profiles"
        overrides = [*base, *(case.overrides if case else ()), f"seed={case.seed if case else run.config.seed}"]
        trace, _, _ = graph_run.execute(build_run(compose(sim_overrides(overrides) + [f"{which}={path}"])))
    metrics = graph_metrics(trace)
    return metrics if _plan_shape(metrics) == _plan_shape(graph_metrics(simulated)) else None


def with_correction(row: dict[str, Any], corrected: dict[str, Any] | None) -> dict[str, Any]:
    """The row with `corrected`: the drift-corrected simulation against the same real runs."""
    if corrected is None:
        return row
    return dict(row, corrected=compare(corrected, row["real"]))


def _cell(row: dict[str, Any], key: str, fmt: str = ".1f") -> str:
    sim, real, spread, err = (row["sim"][key], row["real_median"][key], row["real_spread"][key], row["error"][key])
    return f"{sim:{fmt}} / {real:{fmt}} ±{spread:.0%} ({err:+.1%})"


SERVING_TARGET, LATENCY_TARGET = 0.05, 0.10   # the suite's targets: serving time, E2E p50 and p90


def verdict(row: dict[str, Any], tail: str = "e2e_p90_s") -> str:
    """Serving within SERVING_TARGET, E2E p50 and `tail` within LATENCY_TARGET: yes or no each."""
    e = row["error"]
    ok = [abs(e["serving_s"]) <= SERVING_TARGET, abs(e["e2e_p50_s"]) <= LATENCY_TARGET,
          abs(e[tail]) <= LATENCY_TARGET]
    return " ".join("yes" if x else "no" for x in ok)


def shown(path: Path) -> str:
    """A path as a command line in a report gives it: relative to the checkout where it lies inside."""
    import shlex

    try:
        return shlex.quote(str(Path(path).resolve().relative_to(ROOT)))
    except ValueError:
        return shlex.quote(str(path))


def command_args(suite_path: Path, out: Path) -> list[str]:
    """The options that say which suite ran and where its report went, for the report's Regenerate
    line: a suite file or folder other than the default is part of what regenerates that report."""
    return (([f"--suite {shown(suite_path)}"] if Path(suite_path).resolve() != SUITE else [])
            + ([f"--out {shown(out)}"] if Path(out).resolve() != OUT else []))


def render(suite: SuiteSpec, rows: list[dict[str, Any]], command: str, cases: dict[str, CaseSpec],
           suite_path: Path = SUITE) -> str:
    lines = ["# Simulator fidelity suite: backend=sim vs backend=vllm, same plans", "",
             f"Regenerate: `{command}` (cases: {shown(suite_path)}; method: mosaic/fidelity/suite.py).", "",
             f"Base config: {' '.join(suite.base)}. Each cell: simulated / real median ±spread (error). Real: "
             f"{suite.repeats} runs; spread = half the range over them, relative to the median. Serving = the "
             "busiest worker's time inside engines (load, start-up and unload excluded); latencies from "
             "the start of the request's session; throughput = output tokens / makespan. Agent-graph rows: "
             "serving = the run after every engine was loaded, E2E = per-query latency, TTFT = an agent "
             "request's first token from its release.", "",
             "| case | stage | requests | serving / load | makespan (s) | serving (s) | throughput (tok/s) | "
             "preemptions sim / real | serving within 5%, E2E p50 & p90 within 10% |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = r["real_median"]["serving_s"] / r["real_median"]["mean_load_s"] if r["real_median"]["mean_load_s"] else 0
        real_pre = [x["preemptions"] for x in r["real"]]
        pre = "n/a" if any(p is None for p in real_pre) else f"{float(np.median(real_pre)):.0f}"
        lines.append(f"| {r['case']} | {r['stage']} | {r['sim']['requests']} | {ratio:.1f}x | "
                     f"{_cell(r, 'makespan_s')} | {_cell(r, 'serving_s')} | {_cell(r, 'throughput_tok_s', '.0f')} | "
                     f"{'n/a' if r['sim']['preemptions'] is None else r['sim']['preemptions']} / {pre} | {verdict(r)} |")
    lines += ["", "Latency percentiles (s), simulated / real median ±spread (error):", "",
              "| case | stage | TTFT p50 | TTFT p90 | TTFT p99 | E2E p50 | E2E p90 | E2E p99 |",
              "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['stage']} | "
                     + " | ".join(_cell(r, f"{m}_p{q}_s", ".2f") for m in ("ttft", "e2e") for q in PCTS) + " |")
    lines += corrected_table(rows)
    lines += session_table(rows)
    lines += ["", "Cases:", ""] + [f"- `{n}`: {c.about}" for n, c in cases.items()]
    return "\n".join(lines) + "\n"


CORRECTED = (("serving_s", "serving"), ("makespan_s", "makespan"), ("ttft_p50_s", "TTFT p50"),
             ("e2e_p50_s", "E2E p50"), ("e2e_p99_s", "E2E p99"))


def corrected_table(rows: list[dict[str, Any]]) -> list[str]:
    """Each row's error as simulated on the profile, then on the profile calibrated to the host as
    checked just before its case (--profile-check each): what is left is the simulator's error."""
    rows = [r for r in rows if r.get("corrected")]
    if not rows:
        return []
    lines = ["", "Drift-corrected: the error with the profile as it is, then with the simulation run on the "
             "profile calibrated to the host as checked just before the case (experiments/calibrate_profile.py's "
             "scaling of that check; mosaic/profiles/calibration.py). A host that drifted shows in the first "
             "and not in the second; what the second keeps is the simulator's own error.", "",
             "| case | stage | " + " | ".join(label for _, label in CORRECTED)
             + " | corrected: serving within 5%, E2E p50 & p99 within 10% |",
             "|---|---|" + "---|" * (len(CORRECTED) + 1)]
    for r in rows:
        c = r["corrected"]
        cells = [f"{r['error'][k]:+.1%} -> {c['error'][k]:+.1%}" for k, _ in CORRECTED]
        lines.append(f"| {r['case']} | {r['stage']} | " + " | ".join(cells) + f" | {verdict(c, 'e2e_p99_s')} |")
    return lines


def _session_serving(metrics: dict[str, Any]) -> dict[tuple[int, str, int], float]:
    """Each session's serving seconds, keyed (worker, model, its turn among that worker's sessions of
    the model): the key both backends' traces of one plan share."""
    out: dict[tuple[int, str, int], float] = {}
    for s in metrics["sessions"]:
        k = 0
        while (s["worker"], s["model"], k) in out:
            k += 1
        out[(s["worker"], s["model"], k)] = s["run_s"][1] - s["run_s"][0]
    return out


def host_ratio(row: dict[str, Any], worker: int, model: str) -> float | None:
    """The worker's measured / predicted step time for the model in the check run just before this
    row's case (--profile-check each), None where there was none."""
    for check in row.get("host_check") or ():
        m = check.get("models", {}).get(model) if isinstance(check, dict) else None
        ratio = m.get("workers", {}).get(str(worker)) if isinstance(m, dict) else None
        if isinstance(ratio, (int, float)):
            return float(ratio)
    return None


def session_table(rows: list[dict[str, Any]]) -> list[str]:
    """Per session, simulated against real serving: where a stage's error comes from (one worker or
    all), beside what the worker's host check measured for that model just before the case, if the
    suite ran one per case: a session whose error is about 1 / ratio - 1 is explained by the host's
    speed that hour, not by the simulator."""
    lines = ["", "Per session, serving (s): simulated / real median ±spread (error); host check: the worker's "
             "measured / predicted step time for the model just before the case (--profile-check each), "
             "- where none ran:", "", "| case | stage | worker | model | serving | host check |", "|---|---|---|---|---|---|"]
    for r in rows:
        if not r["sim"].get("sessions"):
            continue
        sim = _session_serving(r["sim"])
        reals = [_session_serving(x) for x in r["real"]]
        for (w, model, k), s in sim.items():
            vals = [x[(w, model, k)] for x in reals if (w, model, k) in x]
            if not vals:
                continue
            med, spread, err = against(s, vals)
            ratio = host_ratio(r, w, model)
            lines.append(f"| {r['case']} | {r['stage']} | {w} | {model} | {s:.1f} / {med:.1f} ±{spread:.0%} "
                         f"({err:+.1%}) | {'-' if ratio is None else f'{ratio:.2f}x'} |")
    return lines


def profile_checks(prepared: dict[str, tuple[Run, list[tuple[StageJob, Trace]]]],
                   config: str = "check_profile") -> list[dict[str, Any]]:
    """check_profile for each profile the cases compare against, over the models their plans run:
    whether the profile still describes this machine (mosaic/fidelity/profile_check.py); `config`
    names the batches (check_profile's, or calibrate_profile's, which tell the per-step, decode and
    prefill terms apart for a drift correction)."""
    from dataclasses import asdict

    from mosaic.fidelity.profile_check import check_profile, probe_settings

    by_profile: dict[str, tuple[Run, set[str]]] = {}
    for run, jobs in prepared.values():
        for job, simulated in jobs:
            # a graph's agents are costed from topology.profiles where it names their own set
            agents = isinstance(job, GraphJob) and run.config.topology.profiles
            _, names = by_profile.setdefault(agents or run.config.workload.profiles, (run, set()))
            names.update(s.model for s in simulated.sessions)
    return [check_profile(probe_settings(asdict(run.config.models), dict(run.config.backend.options), profile,
                                         sorted(names), len(run.cluster.workers), config))
            for profile, (run, names) in by_profile.items()]


def _stored_rows(path: Path) -> list[dict[str, Any]]:
    """An earlier run's fidelity.json, checked to hold what a re-simulation compares against."""
    try:
        rows = json.loads(Path(path).read_text())
    except OSError as e:
        raise ConfigError(f"--resimulate {path}: cannot read it ({e.strerror})") from None
    except ValueError as e:
        raise ConfigError(f"--resimulate {path}: not JSON ({e})") from None
    if not isinstance(rows, list) or not rows:
        raise ConfigError(f"--resimulate {path}: expected the list of rows a fidelity run writes (fidelity.json)")
    def metrics_ok(m: Any) -> bool:
        return (isinstance(m, dict) and isinstance(m.get("requests"), int)
                and all(isinstance(v := m.get(k), (int, float)) and not isinstance(v, bool) and 0 <= v <= MAX_VALUE
                        for k in (*COMPARED, "mean_load_s"))
                and isinstance(m.get("sessions"), list)
                and all(isinstance(x, dict) and isinstance(x.get("worker"), int) and isinstance(x.get("model"), str)
                        for x in m["sessions"]))

    seen = set()
    for i, r in enumerate(rows):
        reals = r.get("real") if isinstance(r, dict) else None
        if (not isinstance(r, dict) or not isinstance(r.get("case"), str) or not isinstance(r.get("stage"), str)
                or not metrics_ok(r.get("sim")) or not isinstance(reals, list) or not reals
                or not all(metrics_ok(x) for x in reals)):
            raise ConfigError(f"--resimulate {path}: row {i} is not a fidelity row (case, stage, and sim and real "
                              f"runs each with requests, sessions and finite, {', '.join(COMPARED)} in [0, {MAX_VALUE:g}]): "
                              "was the file written by experiments/fidelity.py?")
        if (r["case"], r["stage"]) in seen:
            raise ConfigError(f"--resimulate {path}: row {i} repeats case {r['case']} / {r['stage']}")
        seen.add((r["case"], r["stage"]))
    return rows


def _plan_shape(metrics: dict[str, Any]) -> tuple:
    return metrics["requests"], tuple((s["worker"], s["model"]) for s in metrics["sessions"])


def resimulate(stored: Path, out: Path, suite_path: Path = SUITE, only: Sequence[str] = ()) -> str:
    """The simulated side of an earlier suite run again, with the profile and simulator of now,
    against the real runs stored in its fidelity.json (no engine starts). Worth something only where
    the profile describes the host those real runs ran on (e.g. a block of it re-measured there
    after the suite). Each case must plan what it planned then (same requests, same sessions per
    worker), else it is refused. Writes STEM.resim.md/.json under `out`, STEM the stored file's name
    (fidelity for fidelity.json), or fidelity-CASE... for the cases in `only`."""
    only = list(dict.fromkeys(only))   # a case named twice is one case (and one file name)
    rows_then = _stored_rows(stored)
    suite = load_suite(suite_path)
    stored_cases = list(dict.fromkeys(r["case"] for r in rows_then))
    missing = sorted(set(stored_cases) - set(suite.cases))
    if missing:
        raise ConfigError(f"--resimulate {stored}: case {', '.join(missing)} is not in the suite {suite_path}")
    unknown = sorted(set(only) - set(stored_cases))
    if unknown:
        raise ConfigError(f"--resimulate {stored}: holds no case named {', '.join(unknown)}; it holds "
                          f"{', '.join(stored_cases)}")
    by_key = {(r["case"], r["stage"]): r for r in rows_then}
    rows = []
    for name in stored_cases:
        if only and name not in only:
            continue
        try:
            run, jobs = prepare_case(name, suite.cases[name], suite.base)
        except ConfigError as e:
            raise ConfigError(f"fidelity case {name}: {e}") from None
        for job, simulated in jobs:
            then = by_key.get((name, job.stage))
            if then is None:
                raise ConfigError(f"--resimulate {stored}: case {name} now plans a stage {job.stage!r} it did not "
                                  "then; re-run the real side (python experiments/fidelity.py)")
            sim = (graph_metrics if isinstance(job, GraphJob) else stage_metrics)(simulated)
            (n_now, now), (n_then, then_sessions) = _plan_shape(sim), _plan_shape(then["sim"])
            if (n_now, now) != (n_then, then_sessions):
                raise ConfigError(f"--resimulate {stored}: case {name} / {job.stage} plans other sessions now "
                                  f"({n_now} requests on {list(now)}) than its real runs did ({n_then} on "
                                  f"{list(then_sessions)}); re-run the real side (python experiments/fidelity.py)")
            row = {"case": name, "stage": job.stage, "sim_then": then["sim"], **compare(sim, then["real"]),
                   # the host as checked before those real runs (--profile-check each)
                   **({"host_check": then["host_check"]} if then.get("host_check") else {})}
            if then.get("host_check"):
                row = with_correction(row, drift_corrected(run, job, simulated, then["host_check"],
                                                           suite.cases[name], suite.base))
            rows.append(row)
        planned = {job.stage for job, _ in jobs}
        stale = sorted(stage for case, stage in by_key if case == name and stage not in planned)
        if stale:
            raise ConfigError(f"--resimulate {stored}: case {name} no longer plans stage {', '.join(stale)}; re-run "
                              "the real side (python experiments/fidelity.py)")
    cases = {n: suite.cases[n] for n in stored_cases if not only or n in only}
    args = [f"--resimulate {shown(stored)}", *(f"--case {n}" for n in only), *command_args(suite_path, out)]
    repeats = sorted({len(r["real"]) for r in rows})
    md = render(suite.model_copy(update={"repeats": repeats[0]}), rows,
                " ".join(["python experiments/fidelity.py", *args]), cases, suite_path)
    head, sep, rest = md.partition("\n| case |")
    before = "".join(f"- {r['case']} / {r['stage']}: serving {r['sim_then']['serving_s']:.1f} s then, "
                     f"{r['sim']['serving_s']:.1f} s now; E2E p50 {r['sim_then']['e2e_p50_s']:.2f} -> "
                     f"{r['sim']['e2e_p50_s']:.2f} s\n" for r in rows)
    md = (head.replace("# Simulator fidelity suite", "# Simulator fidelity suite, re-simulated", 1)
          + f"\nReal side: the runs stored in {stored} (not re-run). Simulated side: this checkout's profile and "
          "simulator. A re-simulation says how a change to the profile or the simulator does against those runs; "
          "it is worth something only where the profile describes the host they ran on."
          + (f" Real runs per stage: {'-'.join(map(str, repeats))}." if len(repeats) > 1 else "")
          + " Simulated then and now:\n\n"
          + before + sep + rest)
    out.mkdir(parents=True, exist_ok=True)
    # named for the cases, else for the stored file: re-simulating a subset's runs (fidelity-CASE.json)
    # must not replace the whole suite's re-simulation
    stem = ("fidelity" + "".join(f"-{n}" for n in only) if only else Path(stored).stem) + ".resim"
    (out / f"{stem}.md").write_text(md)
    (out / f"{stem}.json").write_text(json.dumps(rows, indent=1) + "\n")
    return md


def write(out: Path, suite_path: Path = SUITE, only: Sequence[str] = (), repeats: int | None = None,
          log=print, check: str = "stop") -> str:
    """Run the suite (or the cases named in `only`), write fidelity.md and fidelity.json under `out`
    (fidelity-CASE....md/.json for a subset). check: first re-measure a few of the profile's own
    batches (profile_checks) and stop with a ConfigError when the profile does not describe this
    machine ("stop"), go on and say so in the table ("warn"), or skip the check ("off"); "each" checks
    again before every case, for the models its plan runs, and keeps the check beside the case's rows,
    so that a session's error can be read beside what its worker measured that hour (a host whose
    speed drifts between cases, or whose cores differ, shows there); it warns, as "warn" does."""
    if check not in ("stop", "warn", "off", "each"):
        raise ConfigError(f"check={check!r}: expected stop, warn, off or each")
    only = list(dict.fromkeys(only))
    suite = load_suite(suite_path)
    unknown = sorted(set(only) - set(suite.cases))
    if unknown:
        raise ConfigError(f"fidelity suite: no case named {', '.join(unknown)}; cases: {', '.join(suite.cases)}")
    if repeats is not None:
        suite = suite.model_copy(update={"repeats": repeats})
    cases = {n: c for n, c in suite.cases.items() if not only or n in only}
    prepared = {}
    for name, case in cases.items():
        try:
            prepared[name] = prepare_case(name, case, suite.base)
        except ConfigError as e:
            raise ConfigError(f"fidelity case {name}: {e}") from None
    from mosaic.fidelity.profile_check import report   # real engines only: not imported for the sim

    checks = profile_checks(prepared) if check in ("stop", "warn") else []
    stale = [c for c in checks if not c["matches"]]
    if stale and check == "stop":
        raise ConfigError("the profile does not describe this machine, so the suite would measure the drift: "
                          + " ".join(" ".join(report(c).split()) for c in stale)
                          + " (python experiments/fidelity.py --profile-check warn runs the suite anyway)")
    rows = []
    for name, (run, jobs) in prepared.items():
        before = profile_checks({name: (run, jobs)}, "calibrate_profile") if check == "each" else []
        checks += before
        case_rows = run_case(name, run, jobs, suite.repeats, log)
        if before:   # the case's error beside what is left of it once the host's speed that hour is simulated
            case_rows = [with_correction(dict(r, host_check=before),
                                         drift_corrected(run, job, simulated, before, cases[name], suite.base))
                         for r, (job, simulated) in zip(case_rows, jobs)]
        rows += case_rows
    args = ([f"--case {n}" for n in only] + ([f"--repeats {repeats}"] if repeats is not None else [])
            + ([f"--profile-check {check}"] if check != "stop" else []) + command_args(suite_path, out))
    md = render(suite, rows, " ".join(["python experiments/fidelity.py", *args]), cases, suite_path)
    if checks:   # after the header and before the table: what the comparison is worth on this machine
        head, sep, rest = md.partition("\n| case |")
        md = head + "\n" + "".join(report(c) + "\n" for c in checks) + sep.lstrip("\n") + rest
    out.mkdir(parents=True, exist_ok=True)
    # A subset of the cases gets its own files, so it never replaces the whole suite's table.
    stem = "fidelity" + "".join(f"-{n}" for n in only)
    (out / f"{stem}.md").write_text(md)
    (out / f"{stem}.json").write_text(json.dumps(rows, indent=1) + "\n")
    if checks:
        (out / f"{stem}.profile_check.json").write_text(json.dumps(checks, indent=1) + "\n")
    return md
