"""Scheduling policies side by side on the three synthetic dataset presets, every run with the
Hydra config experiments/run.py uses (mosaic/conf/), only with group overrides.
`python experiments/compare_policies.py [--seeds 0 1 2]` runs `write`."""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Sequence

from mosaic.core.tables import write_csv
from mosaic.run.app import run
from mosaic.run.builder import compose
from mosaic.core.rundir import check_writable_dir, write_atomic, write_text_atomic

PRESETS = ("synth_mmlu_pro", "synth_medmcqa", "synth_gpqa")
POLICIES = ("engine_aware", "ilp", "round_robin", "fifo", "least_loaded", "data_parallel")   # the default first


def compare(seeds: Sequence[int] = (0, 1, 2)) -> list[dict]:
    """One row per (preset, seed, policy): stage walls, the ILP's prediction and bound, timings.
    Progress goes to stderr."""
    rows = []
    for wl in PRESETS:
        for seed in seeds:
            for pol in POLICIES:
                t0 = time.perf_counter()
                s = run(compose([f"workload={wl}", f"scheduler={pol}", f"seed={seed}"])).summary
                rows.append({"workload": wl, "seed": seed, "scheduler": pol,
                             "n_expert_requests": s["n_expert_requests"],
                             "expert_stage_s": s["expert_stage_s"],
                             "aggregator_stage_s": s["aggregator_stage_s"],
                             "end_to_end_s": s["end_to_end_s"],
                             "expert_predicted_s": s["expert_predicted_makespan_s"],
                             "expert_lower_bound_s": s["expert_lower_bound_s"],
                             "solve_s": s["solver"]["solve_s"] if s["solver"] else None,
                             "wall_s": time.perf_counter() - t0})
                print(f"{wl:15s} seed {seed} {pol:14s} expert {s['expert_stage_s']:8.0f} s  "
                      f"e2e {s['end_to_end_s']:8.0f} s", file=sys.stderr, flush=True)
    return rows


WALL_CLOCK = ("solve_s", "wall_s")


def write(out: Path, seeds: Sequence[int] = (0, 1, 2), command: str = "python experiments/compare_policies.py") -> str:
    """Run `compare`, write policies.csv and policies.md under `out`; returns the markdown. `out`
    is checked first (RunDirError, one line, if it is a file or not writable), not after the runs."""
    check_writable_dir(Path(out), "--out")
    rows = compare(seeds)
    table = render(rows, seeds, command)
    # The CSV holds what a rerun reproduces exactly; the wall-clock columns (solve_s, wall_s) vary
    # between runs and stay in the markdown's solve-time column only.
    write_atomic(Path(out) / "policies.csv",
                 lambda f: write_csv(f, [{k: v for k, v in r.items() if k not in WALL_CLOCK} for r in rows]))
    write_text_atomic(Path(out) / "policies.md", table)
    return table


def render(rows, seeds, command: str = "python experiments/compare_policies.py") -> str:
    def get(wl, pol, key):
        return [r[key] for r in rows if r["workload"] == wl and r["scheduler"] == pol]

    def ratio(wl, pol, key):  # per seed, round_robin / policy, then mean +- std
        vals = [a / b for a, b in zip(get(wl, "round_robin", key), get(wl, pol, key)) if b]
        return f"{statistics.mean(vals):.2f}x" + (f" ± {statistics.stdev(vals):.2f}" if len(vals) > 1 else "")

    out = [f"# Policies vs round-robin on the synthetic presets (seeds {', '.join(map(str, seeds))})", "",
           f"Regenerate with `{command}`. Speedup = round_robin time / policy "
           "time on the same seed; mean ± std over seeds. Simulated 4x A100-80GB, each preset's profiles, "
           "aggregation tau=1.", "",
           "| workload | policy | expert speedup | aggregator speedup | end-to-end speedup | expert stage (s) |",
           "|---|---|---|---|---|---|"]
    for wl in dict.fromkeys(r["workload"] for r in rows):
        for pol in POLICIES:
            out.append(f"| {wl} | {pol} | {ratio(wl, pol, 'expert_stage_s')} | "
                       f"{ratio(wl, pol, 'aggregator_stage_s')} | {ratio(wl, pol, 'end_to_end_s')} | "
                       f"{statistics.mean(get(wl, pol, 'expert_stage_s')):.0f} |")
    out += ["", "ILP quality on the expert stage (mean over seeds): predicted makespan and simulated makespan "
            "over the LP lower bound (total predicted work / N), and HiGHS solve time.", "",
            "| workload | expert requests | ILP predicted / LB | ILP simulated / LB | solve time (s, max) |",
            "|---|---|---|---|---|"]
    for wl in dict.fromkeys(r["workload"] for r in rows):
        lb = get(wl, "ilp", "expert_lower_bound_s")
        pred = statistics.mean(p / b for p, b in zip(get(wl, "ilp", "expert_predicted_s"), lb))
        sim = statistics.mean(p / b for p, b in zip(get(wl, "ilp", "expert_stage_s"), lb))
        out.append(f"| {wl} | {get(wl, 'ilp', 'n_expert_requests')[0]} | {pred:.3f} | {sim:.2f} | "
                   f"{max(get(wl, 'ilp', 'solve_s')):.2f} |")
    return "\n".join(out) + "\n"
