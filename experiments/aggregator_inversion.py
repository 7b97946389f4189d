"""The paper's aggregator-stage walls, turned into the aggregator output lengths they imply under our
engine (mosaic.stage_inversion): a measured cause for the aggregator-stage misses, not a guess.

    python experiments/aggregator_inversion.py [--seed 0] [--out results]

Per dataset: the baseline run (round-robin, aggregator always run, the paper's TP-4 aggregator),
seed 0. Its aggregator requests (prompts and output lengths as simulated) are rerun on the same
TP-4 engine with every output length scaled by one factor, solved so the stage takes the paper's
wall: for all questions against the paper's always-run wall, and for the paper's number of gated
questions at tau = 2/3 against its gated wall. The gated questions are the ones our own gate would
send first: lowest agreement, then longest expert answers (the paper: "the remaining questions carry
the longest expert traces"). The last column is one aggregation alone with its output at the context
limit: the longest any single request can take on this engine. Writes aggregator_inversion.md and
figure_data/aggregator_inversion.csv under --out.
"""
from __future__ import annotations

import argparse
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from mosaic.app import run
from mosaic.backends import make_backend
from mosaic.cluster import Cluster
from mosaic.config import register_configs
from mosaic.pipeline import run_tp_stage
from mosaic.profiles import load_profiles
from mosaic.report import PAPER, PAPER_STAGES, write_csv
from mosaic.stage_inversion import OK, invert_wall, scale_outcomes
from mosaic.workload.types import Outcome, Request

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ("mmlu_pro", "medmcqa", "gpqa")


def inversion_rows(workload_name: str, seed: int = 0) -> list[dict]:
    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[
            f"workload={workload_name}", f"seed={seed}", "scheduler=round_robin", "aggregation=always"])
    c = OmegaConf.to_container(cfg, resolve=True)
    res = run(cfg).result
    profiles = load_profiles(c["workload"]["profiles"])
    cl = c["cluster"]
    cluster = Cluster.uniform(cl["n_workers"], cl["memory_gib"], cl.get("device", "A100-80GB"))
    backend = make_backend("sim", cluster, profiles)
    max_len = profiles.engine.max_model_len
    workload, aggregator = res.workload, res.workload.aggregator

    recs = res.aggregator.trace.requests
    reqs = [Request(r.request_id, r.query_id, r.model, r.prompt_tokens, "aggregator") for r in recs]
    outcomes = {r.request_id: Outcome(r.output_tokens, r.answer) for r in recs}

    def wall_of(subset: list[Request]):
        def wall(factor: float) -> float:
            scaled = replace(workload, outcomes=scale_outcomes(subset, outcomes, factor, max_len))
            return run_tp_stage("aggregator", subset, (aggregator,), backend, cluster, profiles,
                                scaled).trace.makespan_s
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
    lone_s = run_tp_stage("aggregator", [lone], (aggregator,), backend, cluster, profiles, replace(
        workload, outcomes={lone.id: Outcome(max_len - mean_prompt, None)})).trace.makespan_s

    rows = []
    for arm, subset, target in (("always", reqs, PAPER_STAGES[workload_name]["baseline"][1]),
                                ("gated", gated, PAPER_STAGES[workload_name]["mosaic"][1])):
        wall = wall_of(subset)
        inv = invert_wall(wall, target)
        ours = sum(outcomes[r.id].output_tokens for r in subset) / len(subset)
        implied = scale_outcomes(subset, outcomes, inv.factor, max_len)
        rows.append({"workload": workload_name, "aggregator": aggregator, "arm": arm, "requests": len(subset),
                     "paper_wall_s": target, "our_wall_s": wall(1.0), "our_mean_tokens": ours,
                     "status": inv.status, "factor": inv.factor, "wall_at_factor_s": inv.wall_s,
                     "implied_mean_tokens": sum(o.output_tokens for o in implied.values()) / len(implied),
                     "lone_request_at_limit_s": lone_s, "tp": cluster.n, "seed": seed})
    return rows


def render(rows: list[dict]) -> str:
    out = ["# Aggregator stage: the output lengths the paper's walls imply on our engine", "",
           "Regenerate: `python experiments/aggregator_inversion.py` (also run by reproduce.py). Baseline run "
           "(round-robin, aggregator always, TP-4 aggregator), seed 0; every aggregation's output length scaled "
           "by one factor until our TP engine takes the paper's stage wall (`mosaic/stage_inversion.py`). "
           "`gated` = the paper's number of gated questions at tau = 2/3, taken as those our gate sends first "
           "(lowest agreement, then longest expert answers). Stage walls include the TP engine's load, in ours "
           "as in our tables.", "",
           "| dataset | aggregator | arm | requests | paper wall, s | our wall at our lengths, s | our mean "
           "tokens | implied mean tokens | factor | one request alone at the context limit, s |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        implied = (f"{r['implied_mean_tokens']:.0f}" if r["status"] == OK
                   else f"none: {r['status'].replace('_', ' ')} (at x{r['factor']:.0f}: {r['wall_at_factor_s']:.0f} s)")
        out.append(f"| {r['workload']} | {r['aggregator']} | {r['arm']} | {r['requests']} | {r['paper_wall_s']:.0f} | "
                   f"{r['our_wall_s']:.0f} | {r['our_mean_tokens']:.0f} | {implied} | "
                   + (f"{r['factor']:.2f}" if r["status"] == OK else "–")
                   + f" | {r['lone_request_at_limit_s']:.0f} |")
    out += ["", "Per dataset: the aggregator-stage speedup our engine gives at our lengths if the gate sent exactly "
            "the paper's number of questions (always wall / gated wall, both at factor 1), against the paper's; and "
            "how much longer a gated aggregation is than the always-run average (implied by the paper's two walls "
            "| ours):", ""]
    for wl in dict.fromkeys(r["workload"] for r in rows):
        a, g = (next(r for r in rows if r["workload"] == wl and r["arm"] == arm) for arm in ("always", "gated"))
        ours = g["our_mean_tokens"] / a["our_mean_tokens"]
        ratio = (f"{g['implied_mean_tokens'] / a['implied_mean_tokens']:.2f}x"
                 if a["status"] == OK and g["status"] == OK else "no length reproduces both walls")
        out.append(f"- {wl}: speedup at the paper's skip count {a['our_wall_s'] / g['our_wall_s']:.2f}x "
                   f"(paper {a['paper_wall_s'] / g['paper_wall_s']:.2f}x); gated / always length {ratio} | {ours:.2f}x")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "results")
    args = ap.parse_args()
    rows = [row for wl in DATASETS for row in inversion_rows(wl, args.seed)]
    write_csv(args.out / "figure_data" / "aggregator_inversion.csv", rows)
    (args.out / "aggregator_inversion.md").write_text(render(rows))
    print(render(rows))


if __name__ == "__main__":
    main()
