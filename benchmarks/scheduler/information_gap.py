"""What engine_aware's distance from the bound is made of: the lengths it cannot know.

The benchmark's bound and its clairvoyant reference are made with every request's true output
length; a plan made before the run has the calibration split's per-model statistics (and, where
the split has categories, per-category means). For every instance of a benchmark table
(scheduler_bench.csv) engine_aware plans again with more of the truth each time, and every plan
is simulated on the run's own outputs:

* as run: the benchmark's plan (checked against the table's plan hash);
* realised model lengths: the calibration statistics (mean, max) of every model replaced by those
  of the outputs its requests realise in this run: what sampling the calibration split, and the
  run's own draw of each model's demand, cost;
* true lengths dealt: the as-run plan's replica counts, each model's requests dealt to its
  replicas by their true lengths (longest first, the dealing category signals use): what not
  knowing which request is long costs within engine_aware's structure;
* true lengths, cost-aware: the as-run plan's replicas, each model's requests dealt again by their
  true lengths so that the replica holding a long request takes fewer other tokens
  (benchmarks/scheduler/dealing.py);
* both: realised model lengths and true lengths dealt together;
* clairvoyant: the table's reference plan (benchmarks/scheduler/clairvoyant.py), made with the true
  lengths by a search of its own;
* best known: the fastest of the four plans made with the true lengths.

Every ratio is over the table's bound (lb_s), the one the benchmark's targets are stated on.

Command: python -m benchmarks.scheduler.information_gap (after python -m benchmarks.scheduler).
"""
from __future__ import annotations

import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from benchmarks.scheduler import bench as sb
from benchmarks.scheduler.table import read_table, same_plan
from benchmarks.scheduler.dealing import redeal, with_true_hints
from benchmarks.scheduler import table as bench_table
from mosaic.core.arguments import ArgumentParser, rerun_command
from mosaic.core.errors import ConfigError
from mosaic.plan import Plan
from mosaic.core.rundir import write_text_atomic
from mosaic.run.pipeline import plan_stage
from mosaic.schedulers import schedule

POLICY = "engine_aware"
KNOWN = ("true_lengths_dealt", "true_lengths_cost_dealt", "both", "clairvoyant")   # made with the true lengths
ARMS = ("as_run", "realised_model_lengths", *KNOWN, "best_known")
LABELS = {"as_run": "as run", "realised_model_lengths": "realised model lengths",
          "true_lengths_dealt": "true lengths dealt", "true_lengths_cost_dealt": "true lengths, cost-aware",
          "both": "both", "clairvoyant": "clairvoyant", "best_known": "best known"}
TARGETS = (1.15, 1.30)   # the scheduler issue's median and worst sim/LB

RESULTS = Path(__file__).resolve().parents[2] / "results"


def replica_counts(plan: Plan) -> Counter:
    """(model, worker) -> requests that worker's sessions of the model serve."""
    counts: Counter = Counter()
    for wp in plan.workers:
        for s in wp.sessions:
            counts[s.model, wp.worker] += len(s.request_ids)
    return counts


def realised_calibration(workload, requests) -> dict:
    """The workload's calibration statistics with every model's mean and max output those its
    requests realise in the run (per-category means, the count and prompts kept)."""
    outs: dict[str, list[int]] = {}
    for r in requests:
        outs.setdefault(r.model, []).append(workload.outcomes[r.id].output_tokens)
    cal = dict(workload.calibration)
    for m, v in outs.items():
        if m in cal:
            cal[m] = replace(cal[m], mean_output=float(np.mean(v)), max_output=int(np.max(v)))
    return cal


def _table_rows(table: pd.DataFrame) -> pd.DataFrame:
    need = {"family", "instance", "policy", "status", "sim_s", "lb_s", "clair_s", "plan_hash"}
    if not need <= set(table.columns):
        raise ConfigError(f"not a scheduler benchmark table: no column {', '.join(sorted(need - set(table.columns)))} "
                          "(python -m benchmarks.scheduler writes one)")
    rows = table[(table.policy == POLICY) & (table.status == "ok")]
    if rows.empty:
        raise ConfigError(f"the table has no planned {POLICY} rows: run the benchmark with it")
    return rows


def measure(table: pd.DataFrame, seed: int = 0, quick: bool = False,
            progress: Callable[[str], None] | None = None) -> pd.DataFrame:
    """One row per instance with an engine_aware plan in the table: simulated seconds of every arm
    (see the module doc), the bound, and whether dealing by true lengths kept the replica counts."""
    from mosaic.backends.sim.backend import SimBackend

    rows = _table_rows(table)
    insts = {i.name: i for i in sb.instances(sorted(set(rows.family)), seed, quick)}
    out = []
    for row in rows.itertuples():
        inst = insts.get(row.instance)
        if inst is None:
            raise ConfigError(f"instance {row.instance} is not among those seed {seed}{' --quick' if quick else ''} "
                              "makes: the table comes from other settings or another version of the benchmark; rerun it")
        reqs = list(inst.requests)
        by_id = {r.id: r for r in reqs}
        wl = inst.workload
        cfg = sb.scheduler_config(POLICY, inst.k)
        truth = {r.id: float(wl.outcomes[r.id].output_tokens) for r in reqs}

        def planned(workload):
            return plan_stage("expert", reqs, workload.expert_models, cfg, "scheduled", inst.cluster, inst.profiles,
                              workload)

        def dealt(problem):
            return schedule(POLICY, with_true_hints(problem, truth), reqs, cfg)

        def sim(plan: Plan) -> float:
            return SimBackend(inst.cluster, inst.profiles).run(plan, by_id, wl.outcomes).makespan_s

        problem, plan = planned(wl)
        same_plan(table, row.instance, POLICY, plan, seed, quick)
        known_problem, known_plan = planned(replace(wl, calibration=realised_calibration(wl, reqs)))
        true_plan = dealt(problem)
        rec = {"family": row.family, "instance": row.instance, "lb_s": float(row.lb_s), "as_run": sim(plan),
               "realised_model_lengths": sim(known_plan), "true_lengths_dealt": sim(true_plan),
               "true_lengths_cost_dealt": sim(redeal(plan, reqs, truth, inst.profiles, inst.memory_gib)),
               "both": sim(dealt(known_problem)),
               "clairvoyant": float(row.clair_s) if pd.notna(row.clair_s) else float("nan"),
               "counts_kept": replica_counts(true_plan) == replica_counts(plan)}
        rec["best_known"] = float(np.nanmin([rec[a] for a in KNOWN]))
        out.append(rec)
        if progress:
            progress(f"{row.instance}: " + ", ".join(f"{LABELS[a]} {rec[a] / rec['lb_s']:.3f}" for a in ARMS))
    return pd.DataFrame(out)


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per family (and all): median and worst sim/LB of every arm, and on how many instances it is
    within each target."""
    recs = []
    for fam, g in [*df.groupby("family", sort=False), ("all", df)]:
        for arm in ARMS:
            r = (g[arm] / g.lb_s).dropna()
            if r.empty:
                continue
            recs.append({"family": fam, "arm": arm, "n": len(r), "median": float(r.median()), "worst": float(r.max()),
                         **{f"within_{t:.2f}": int((r <= t + 1e-12).sum()) for t in TARGETS}})
    return pd.DataFrame(recs)


def render(df: pd.DataFrame, command: str) -> str:
    s = summary(df)
    lines = ["# What engine_aware's distance from the bound is made of", "",
             f"Regenerate: `{command}` (logic: benchmarks/scheduler/information_gap.py; reads the benchmark table). "
             "engine_aware planned again with more of the truth each time, every plan simulated on the run's own "
             "outputs, over the table's lower bound: `as run` the benchmark's plan; `realised model lengths` with "
             "every model's calibration mean and max replaced by those its requests realise in the run; `true "
             "lengths dealt` the same replica counts with each model's requests dealt to its replicas by their "
             "true lengths (longest first, balancing tokens); `true lengths, cost-aware` the same replicas, each "
             "model's requests dealt again by their true lengths so that a replica holding a long request takes "
             "fewer other tokens (benchmarks/scheduler/dealing.py); `both` realised model lengths and true lengths "
             "dealt; `clairvoyant` the benchmark's reference plan, made with every length known; `best known` the "
             "fastest of the four plans made with the true lengths. A plan made before the run has none of these: "
             "the difference between `as run` and the other arms is what the unknown lengths cost.", "",
             "| family | arm | instances | median sim/LB | worst sim/LB | "
             + " | ".join(f"<= {t:.2f}" for t in TARGETS) + " |",
             "|---|---|---|---|---|" + "---|" * len(TARGETS)]
    for r in s.to_dict("records"):
        within = " | ".join(f"{r[f'within_{t:.2f}']} of {r['n']}" for t in TARGETS)
        lines.append(f"| {r['family']} | {LABELS[r['arm']]} | {r['n']} | {r['median']:.3f} | {r['worst']:.3f} | {within} |")
    kept = int(df.counts_kept.sum())
    lines += ["", f"Dealing by true lengths kept the as-run plan's replica counts on {kept} of {len(df)} instances.",
              "", "| instance | " + " | ".join(LABELS[a] for a in ARMS) + " |", "|---|" + "---|" * len(ARMS)]
    for r in df.itertuples():
        cells = " | ".join("-" if np.isnan(getattr(r, a)) else f"{getattr(r, a) / r.lb_s:.3f}" for a in ARMS)
        lines.append(f"| {r.instance} | {cells} |")
    return "\n".join(lines) + "\n"


def write(table_path: Path, out: Path, seed: int = 0, quick: bool = False,
          progress: Callable[[str], None] | None = print,
          command: str = "python -m benchmarks.scheduler.information_gap") -> str:
    md = render(measure(read_table(table_path), seed, quick, progress), command)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, md)
    return md


def main() -> None:
    ap = ArgumentParser(prog="python -m benchmarks.scheduler.information_gap", description=__doc__)
    bench_table.add_arguments(ap, RESULTS, "information_gap.md")
    args = ap.parse_args()
    bench_table.check_arguments(ap, args)
    command = rerun_command("-m benchmarks.scheduler.information_gap", sys.argv[1:])
    bench_table.report(lambda: write(args.table, args.out, args.seed, args.quick, command=command))


if __name__ == "__main__":
    main()
