"""Fig. 3b: one engine's output throughput against the number of prompts it serves, per model
(`python experiments/shard_throughput.py [--workload mmlu_pro] [--sizes ...]` runs `write`).

Each point runs the simulator's engine (sim backend, one A100 worker, one session, load excluded)
on the first n of the model's expert prompts in the workload (seed 0), and adds the model's
data-parallel shard (N_m / 4 workers) and its whole share N_m (what round-robin gives one GPU).
DESIGN.md (A.6): small instruct models lose 40-60% of their per-shard throughput at 137-239 prompts
per shard, reasoning models stay at 1000-2000 tok/s. `write` writes figure_data/fig3b_shard_throughput.csv
and shard_throughput.md (the comparison) under its folder.
"""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Sequence

from mosaic.core.tables import write_csv
from mosaic.plan import Plan, Session, WorkerPlan
from mosaic.run.builder import build_run, compose
from mosaic.core.rundir import write_text_atomic

# A model whose mean answer is this long is a reasoning model (the pool's are ~3000 vs ~200-500).
REASONING_MIN_MEAN_TOKENS = 1000
PAPER_BAND = (137, 239)
DEFAULT_SIZES = (16, 32, 64, 137, 239, 512, 1024)


def shard_rows(workload_name: str, sizes: list[int], seed: int = 0) -> list[dict]:
    run = build_run(compose([f"workload={workload_name}", f"seed={seed}", "backend=sim"]))
    workload, backend, n_workers = run.workload, run.backend, run.cluster.n
    by_model = defaultdict(list)
    for r in workload.expert_requests():
        by_model[r.model].append(r)
    rows = []
    for model, reqs in sorted(by_model.items()):
        n_m = len(reqs)
        mean_out = sum(workload.outcomes[r.id].output_tokens for r in reqs) / n_m
        kind = "reasoning" if mean_out >= REASONING_MIN_MEAN_TOKENS else "instruct"
        points = {n: "shard" for n in sizes if n <= n_m} | {math.ceil(n_m / n_workers): "dp_shard", n_m: "full"}
        for n, what in sorted(points.items()):
            shard = reqs[:n]
            # One session on worker 0 alone: the other workers of the run's cluster stay idle.
            plan = Plan("expert", "shard", (WorkerPlan(0, (Session(model, tuple(r.id for r in shard)),)),))
            trace = backend.run(plan, {r.id: r for r in shard}, workload.outcomes)
            s = trace.sessions[0]
            gen_s = s.run_end_s - s.run_start_s
            tokens = sum(r.output_tokens for r in trace.requests)
            rows.append({"workload": workload_name, "model": model, "kind": kind, "n_model_prompts": n_m,
                         "shard_size": n, "point": what, "output_tokens": tokens, "generate_s": gen_s,
                         "tokens_per_s": tokens / gen_s if gen_s > 0 else 0.0})
    for model in by_model:   # throughput relative to the model's whole share on one GPU
        mine = [r for r in rows if r["model"] == model]
        full = next(r["tokens_per_s"] for r in mine if r["point"] == "full")
        for r in mine:
            r["rel_to_full"] = r["tokens_per_s"] / full if full else 0.0
    return rows


def render(rows: list[dict], command: str = "python experiments/shard_throughput.py") -> str:
    out = ["# Fig. 3b: throughput vs shard size (simulated engine, one A100)", "",
           f"Regenerate: `{command}`. tok/s = output tokens / generation time of one "
           f"session (load excluded). Paper (DESIGN.md, A.6): instruct models lose 40-60% at {PAPER_BAND[0]}-"
           f"{PAPER_BAND[1]} prompts per shard, reasoning models stay at 1000-2000 tok/s.", "",
           "| model | kind | N_m | tok/s, whole share | tok/s, DP shard (N_m/4) | tok/s in the "
           f"{PAPER_BAND[0]}-{PAPER_BAND[1]} band | loss in the band vs whole share |", "|---|---|---|---|---|---|---|"]
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        full = next(r for r in mine if r["point"] == "full")
        # A model with no more prompts than workers: its DP shard is its whole share (one point).
        dp = next((r for r in mine if r["point"] == "dp_shard"), full)
        band = [r for r in mine if PAPER_BAND[0] <= r["shard_size"] <= PAPER_BAND[1]]
        lo, hi = (min(r["tokens_per_s"] for r in band), max(r["tokens_per_s"] for r in band)) if band else (None, None)
        loss = ", ".join(f"{1 - r['rel_to_full']:.0%} at {r['shard_size']}" for r in band) or "–"
        out.append(f"| {model} | {full['kind']} | {full['n_model_prompts']} | {full['tokens_per_s']:.0f} | "
                   f"{dp['tokens_per_s']:.0f} ({dp['shard_size']}) | "
                   + (f"{lo:.0f}-{hi:.0f}" if band else "–") + f" | {loss} |")
    return "\n".join(out) + "\n"


def write(out: Path, workload_name: str = "mmlu_pro", sizes: Sequence[int] = DEFAULT_SIZES, seed: int = 0,
          command: str = "python experiments/shard_throughput.py") -> str:
    """The Fig. 3b data and its comparison: writes both under `out`; returns the markdown."""
    rows = shard_rows(workload_name, list(sizes), seed)
    md = render(rows, command)   # before anything is written: a failure leaves neither file
    write_csv(out / "figure_data" / "fig3b_shard_throughput.csv", rows)
    write_text_atomic(out / "shard_throughput.md", md)
    return md
