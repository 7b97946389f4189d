"""The paper's stage walls, turned into the output lengths they imply under our engine
(mosaic.analysis.stage_inversion): measured causes for the stage misses, not guesses.
`python experiments/invert_walls.py [--seed 0] [--out results]` runs `write`.

Aggregator stage, per dataset: the baseline run (round-robin, aggregator always run, the paper's
TP-4 aggregator). Its aggregator requests (prompts and output lengths as simulated) are rerun on the
same TP-4 engine with every output length scaled by one factor, solved so the stage takes the
paper's wall: for all questions against the paper's always-run wall, and for the paper's number of
gated questions at tau = 2/3 against its gated wall. The gated questions are the ones our own gate
would send first: lowest agreement, then longest expert answers (the paper: "the remaining questions
carry the longest expert traces"). `lone` is one aggregation alone with its output at the context
limit: the longest any single request can take on this engine.

Expert stage, per dataset and arm (round-robin, ILP with K = 2), with Table-3 routing so that the
router is the paper's: the arm's plan is kept and every expert answer's length scaled by one factor
until the plan's simulated wall is the paper's. The same factor in both arms points at the lengths
(or engine speed); different factors point at the scheduler.

`write` writes wall_inversion.md and figure_data/wall_inversion_{aggregator,expert}.csv under its
folder.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from pathlib import Path

from mosaic.analysis.paper_table import PAPER, PAPER_STAGES
from mosaic.analysis.stage_inversion import OK, invert_wall, scale_outcomes
from mosaic.core.tables import write_csv
from mosaic.profiles import ProfileSet
from mosaic.run.builder import Run, build_run, compose
from mosaic.run.pipeline import PipelineResult, StageResult, run_stage
from mosaic.workload.types import Outcome, Request, Workload

DATASETS = ("mmlu_pro", "medmcqa", "gpqa")
ARMS = {"baseline": "round_robin", "mosaic": "ilp"}


def _run(workload_name: str, seed: int, overrides: list[str]) -> tuple[Run, PipelineResult]:
    """One run of the pipeline; returns the run (its cluster, profiles and backend rerun a stage)
    and its result."""
    run = build_run(compose([f"workload={workload_name}", f"seed={seed}", *overrides]))
    return run, run.execute()


def _tp_stage(run: Run, requests: list[Request], workload: Workload) -> StageResult:
    """The aggregator stage as the paper runs it: one tensor-parallel engine over every worker."""
    return run_stage("aggregator", requests, (run.workload.aggregator,), run.config.scheduler, "tp", run.backend,
                     run.cluster, run.profiles, workload)


def _implied(subset: list[Request], outcomes: dict[str, Outcome], factor: float, profiles: ProfileSet,
             model: str | None = None) -> float:
    scaled = scale_outcomes(subset, outcomes, factor, profiles.engine.max_model_len)
    picked = [o.output_tokens for r in subset for o in [scaled[r.id]] if model is None or r.model == model]
    return sum(picked) / len(picked) if picked else 0.0


def aggregator_rows(workload_name: str, seed: int = 0) -> list[dict]:
    run, res = _run(workload_name, seed, ["scheduler=round_robin", "aggregation=always"])
    profiles, cluster = run.profiles, run.cluster
    max_len = profiles.engine.max_model_len
    workload, aggregator = res.workload, res.workload.aggregator
    recs = res.aggregator.trace.requests
    reqs = [Request(r.request_id, r.query_id, r.model, r.prompt_tokens, "aggregator") for r in recs]
    outcomes = {r.request_id: Outcome(r.output_tokens, r.answer) for r in recs}

    def wall_of(subset: list[Request]):
        def wall(factor: float) -> float:
            scaled = replace(workload, outcomes=scale_outcomes(subset, outcomes, factor, max_len))
            return _tp_stage(run, subset, scaled).trace.makespan_s
        return wall

    expert_tokens: dict[str, int] = defaultdict(int)
    for r in res.expert.trace.requests:
        expert_tokens[r.query_id] += r.output_tokens
    agreement = {d.query_id: d.agreement for d in res.decisions}
    by_query = {r.query_id: r for r in reqs}
    order = sorted(by_query, key=lambda q: (agreement[q], -expert_tokens[q], q))
    n_gated = round((1 - PAPER[workload_name]["skip_tau067"] / 100) * len(reqs))
    gated = [by_query[q] for q in order[:n_gated]]

    # The longest one request can take: alone, its output filling the rest of the context window.
    mean_prompt = round(sum(r.prompt_tokens for r in gated) / len(gated))
    lone = Request("lone/agg", "lone", aggregator, mean_prompt, "aggregator")
    lone_s = _tp_stage(run, [lone], replace(
        workload, outcomes={lone.id: Outcome(max_len - mean_prompt, None)})).trace.makespan_s

    rows = []
    for arm, subset, target in (("always", reqs, PAPER_STAGES[workload_name]["baseline"][1]),
                                ("gated", gated, PAPER_STAGES[workload_name]["mosaic"][1])):
        wall = wall_of(subset)
        inv = invert_wall(wall, target)
        rows.append({"workload": workload_name, "aggregator": aggregator, "arm": arm, "requests": len(subset),
                     "paper_wall_s": target, "our_wall_s": wall(1.0),
                     "our_mean_tokens": _implied(subset, outcomes, 1.0, profiles),
                     "status": inv.status, "factor": inv.factor, "wall_at_factor_s": inv.wall_s,
                     "implied_mean_tokens": _implied(subset, outcomes, inv.factor, profiles),
                     "lone_request_at_limit_s": lone_s, "tp": cluster.n, "seed": seed})
    return rows


def expert_rows(workload_name: str, seed: int = 0) -> list[dict]:
    rows = []
    for arm, scheduler in ARMS.items():
        run, res = _run(workload_name, seed, [f"scheduler={scheduler}", "aggregation=always",
                                              "workload.routing=paper_table3"])
        profiles, backend = run.profiles, run.backend
        reqs = list(res.workload.expert_requests())
        by_id = {r.id: r for r in reqs}
        outcomes = dict(res.workload.outcomes)
        plan = res.expert.plan

        def wall(factor: float) -> float:
            scaled = scale_outcomes(reqs, outcomes, factor, profiles.engine.max_model_len)
            return backend.run(plan, by_id, scaled).makespan_s

        paper_total, paper_agg = PAPER_STAGES[workload_name][arm]
        inv = invert_wall(wall, paper_total - paper_agg)
        reasoning = sorted({r.model for r in reqs if profiles.model(r.model).kind == "reasoning"})
        row = {"workload": workload_name, "arm": arm, "scheduler": scheduler, "routing": "paper_table3",
               "requests": len(reqs), "paper_wall_s": paper_total - paper_agg, "our_wall_s": wall(1.0),
               "status": inv.status, "factor": inv.factor, "wall_at_factor_s": inv.wall_s, "seed": seed}
        for m in reasoning:
            row[f"{m}_our_mean_tokens"] = _implied(reqs, outcomes, 1.0, profiles, m)
            row[f"{m}_implied_mean_tokens"] = _implied(reqs, outcomes, inv.factor, profiles, m)
        rows.append(row)
    return rows


def render(agg: list[dict], exp: list[dict], seed: int = 0, command: str = "python experiments/invert_walls.py") -> str:
    out = ["# Stage walls: the output lengths the paper's walls imply on our engine", "",
           f"Regenerate: `{command}` (also run by reproduce.py); method: "
           f"`mosaic/analysis/stage_inversion.py` and `mosaic/analysis/wall_inversion.py`'s docstring. Seed {seed}. "
           "Every output length of the stage is "
           "scaled by one factor until our engine takes the paper's wall. Stage walls include engine loads, in ours "
           "as in our tables.", "",
           "## Aggregator stage (baseline requests, TP-4 aggregator)", "",
           "`gated` = the paper's number of gated questions at tau = 2/3, taken as those our gate sends first "
           "(lowest agreement, then longest expert answers).", "",
           "| dataset | aggregator | arm | requests | paper wall, s | our wall at our lengths, s | our mean "
           "tokens | implied mean tokens | factor | one request alone at the context limit, s |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in agg:
        out.append(f"| {r['workload']} | {r['aggregator']} | {r['arm']} | {r['requests']} | {r['paper_wall_s']:.0f} | "
                   f"{r['our_wall_s']:.0f} | {r['our_mean_tokens']:.0f} | {_implied_cell(r, r['implied_mean_tokens'])} | "
                   + (f"{r['factor']:.2f}" if r["status"] == OK else "–")
                   + f" | {r['lone_request_at_limit_s']:.0f} |")
    out += ["", "Per dataset: the aggregator-stage speedup our engine gives at our lengths if the gate sent exactly "
            "the paper's number of questions (always wall / gated wall, both at factor 1), against the paper's; and "
            "how much longer a gated aggregation is than the always-run average (implied by the paper's two walls "
            "| ours):", ""]
    for wl in dict.fromkeys(r["workload"] for r in agg):
        a, g = (next(r for r in agg if r["workload"] == wl and r["arm"] == arm) for arm in ("always", "gated"))
        ours = g["our_mean_tokens"] / a["our_mean_tokens"]
        ratio = (f"{g['implied_mean_tokens'] / a['implied_mean_tokens']:.2f}x"
                 if a["status"] == OK and g["status"] == OK else "no length reproduces both walls")
        out.append(f"- {wl}: speedup at the paper's skip count {a['our_wall_s'] / g['our_wall_s']:.2f}x "
                   f"(paper {a['paper_wall_s'] / g['paper_wall_s']:.2f}x); gated / always length {ratio} | {ours:.2f}x")
    out += ["", "## Expert stage (Table-3 routing; each arm's own plan kept)", "",
            "| dataset | arm | requests | paper wall, s | our wall at our lengths, s | factor | reasoning experts' "
            "mean tokens, ours -> implied |", "|---|---|---|---|---|---|---|"]
    for r in exp:
        models = [k[:-len("_our_mean_tokens")] for k in r if k.endswith("_our_mean_tokens")]
        lengths = ", ".join(f"{m} {r[m + '_our_mean_tokens']:.0f} -> {_implied_cell(r, r[m + '_implied_mean_tokens'])}"
                            for m in models)
        out.append(f"| {r['workload']} | {r['arm']} ({r['scheduler']}) | {r['requests']} | {r['paper_wall_s']:.0f} | "
                   f"{r['our_wall_s']:.0f} | " + (f"{r['factor']:.2f}" if r["status"] == OK else "–")
                   + f" | {lengths} |")
    return "\n".join(out) + "\n"


def _implied_cell(r: dict, value: float) -> str:
    if r["status"] == OK:
        return f"{value:.0f}"
    return f"none: {r['status'].replace('_', ' ')} (x{r['factor']:.3g}: {r['wall_at_factor_s']:.0f} s)"


def write(out: Path, seed: int = 0, command: str = "python experiments/invert_walls.py") -> str:
    """Both inversions for every dataset of DATASETS: writes the CSVs and wall_inversion.md under
    `out`; returns the markdown."""
    agg = [row for wl in DATASETS for row in aggregator_rows(wl, seed)]
    exp = [row for wl in DATASETS for row in expert_rows(wl, seed)]
    write_csv(out / "figure_data" / "wall_inversion_aggregator.csv", agg)
    write_csv(out / "figure_data" / "wall_inversion_expert.csv", exp)
    md = render(agg, exp, seed, command)
    (out / "wall_inversion.md").write_text(md)
    return md
