"""Where engine_aware loses in the scheduler benchmark, and why: for every instance of a benchmark
table (scheduler_bench.csv) on which another policy that respects K simulates faster, both plans
are made again and the faster one is priced by engine_aware's own cost model (the prediction it
chose its plan by). If that model rates the faster plan worse, the search found what it looked for
and the prediction is what misled it; the model whose calibrated mean output is furthest from
what its requests realise says how far the calibration split was from the run.

Redraws: both plans simulated again with each model's output lengths shuffled among its own
requests (the same shuffle for both), which keeps every model's demand and changes only which of
its requests lands on which replica, the part a plan made before the run cannot know. A loss the
faster plan keeps in most redraws is systematic; one it keeps in few is the draw of the run.

Fresh draws: both plans simulated again with every request's output drawn anew from its model's
length distribution (the profile's, on the instance's dataset, capped by the context as the
generators cap it), so each model's demand is drawn again too: how the two plans compare over the
workloads the calibration split describes, which is what a plan made from it can aim at. Exact
for the generated family (its outputs are drawn so); for the presets and the paper sets the
per-question coupling of lengths (difficulty, category) is dropped, only each model's marginal kept.
The draw gap (the calibrated model's realised mean over its distribution's mean, - 1) tells a
calibration split off from the distribution from a run whose draw is.

Command: python -m benchmarks.scheduler.losses (after python -m benchmarks.scheduler).
"""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from benchmarks.scheduler import bench as sb
from benchmarks.scheduler.table import read_table, same_plan
from benchmarks.scheduler import table as bench_table
from mosaic.core.arguments import ArgumentParser, rerun_command
from mosaic.core.errors import ConfigError
from mosaic.core.rundir import write_text_atomic
from mosaic.run.pipeline import plan_stage
from mosaic.schedulers import engine_aware as ea

POLICY = "engine_aware"
COLUMNS = ("instance", "faster", "own_predicted_s", "faster_predicted_s", "own_sim_s", "faster_sim_s",
           "predicted_gap", "sim_gap", "calibration_model", "calibration_gap", "draw_gap", "redraws",
           "redraw_wins", "redraw_gap", "redraw_se", "fresh_wins", "fresh_gap", "fresh_se")
REDRAWS = 8   # per loss and kind (shuffled, fresh); each simulates both plans once

RESULTS = Path(__file__).resolve().parents[2] / "results"


def losses(table: pd.DataFrame) -> list[tuple[str, str, float, float]]:
    """(instance, faster policy, engine_aware's simulated s, the faster one's) where a policy that
    respects K simulates faster than engine_aware, in table order."""
    need = {"family", "instance", "policy", "status", "sim_s", "respects_k", "plan_hash"}
    if not need <= set(table.columns):
        raise ConfigError(f"not a scheduler benchmark table: no column {', '.join(sorted(need - set(table.columns)))} "
                          "(python -m benchmarks.scheduler writes one)")
    check_values(table)
    ok = table[table.status == "ok"]
    if not (ok.policy == POLICY).any():
        raise ConfigError(f"the table has no {POLICY} rows: run the benchmark with it")
    lost = ok[(ok.policy == POLICY) & sb.beaten(table)[ok.index]].set_index("instance").sim_s
    others = ok[(ok.policy != POLICY) & (ok.respects_k.astype(str) == "True")].sort_values(["sim_s", "policy"])
    best = others.groupby("instance", sort=False).first()
    return [(i, best.loc[i].policy, float(lost[i]), float(best.loc[i].sim_s)) for i in lost.index]


def check_values(table: pd.DataFrame) -> None:
    """The columns losses() reads hold what the benchmark writes: one row per instance and policy,
    a number of seconds and True/False on every planned row."""
    fix = "(python -m benchmarks.scheduler writes one; rerun it)"
    rows = table.groupby(["instance", "policy"], sort=False).size()
    many = rows[rows > 1]
    if not many.empty:
        (instance, policy), n = next(iter(many.items()))
        raise ConfigError(f"not a scheduler benchmark table: {instance} / {policy} has {n} rows, not one {fix}")
    ok = table[table.status == "ok"]
    seconds = pd.to_numeric(ok.sim_s, errors="coerce")
    bad = ok[seconds.isna() | (seconds < 0)]
    if not bad.empty:
        raise ConfigError(f"not a scheduler benchmark table: sim_s of {bad.instance.iloc[0]} / {bad.policy.iloc[0]} "
                          f"is {bad.sim_s.iloc[0]!r}, not a number of seconds {fix}")
    flags = ok.respects_k.map(lambda v: str(v) if isinstance(v, (bool, np.bool_, str)) else v)
    bad = ok[~flags.isin(["True", "False"])]
    if not bad.empty:
        raise ConfigError(f"not a scheduler benchmark table: respects_k of {bad.instance.iloc[0]} / "
                          f"{bad.policy.iloc[0]} is {bad.respects_k.iloc[0]!r}, not True or False {fix}")


def shuffled_outcomes(outcomes: dict, by_model: dict[str, list[str]], rng: np.random.Generator) -> dict:
    """`outcomes` with each model's values permuted among its own request ids."""
    out = dict(outcomes)
    for ids in by_model.values():
        values = [outcomes[i] for i in ids]
        for i, j in zip(ids, rng.permutation(len(ids))):
            out[i] = values[j]
    return out


def fresh_outcomes(inst, rng: np.random.Generator) -> dict:
    """The instance's outcomes with every expert request's output drawn anew the way the generated
    family draws them (scheduler_bench.draw_outputs, on the instance's dataset), answers kept;
    models in the order they first appear."""
    by_model: dict[str, list] = {}
    for r in inst.requests:
        by_model.setdefault(r.model, []).append(r)
    out = dict(inst.workload.outcomes)
    for i, o in sb.draw_outputs(inst.profiles, inst.dataset, by_model, rng).items():
        out[i] = replace(out[i], output_tokens=o)
    return out


def redraw(inst, own, other, n: int, seed: int, fresh: bool = False) -> tuple[int, float, float]:
    """(in how many of n redraws the other plan simulates faster than engine_aware's, the mean of
    own / other - 1 over them, that mean's standard error); redraw d shuffles with the seed
    (seed, d), or with `fresh` draws every output anew (fresh_outcomes) with the seed (seed, d, 1),
    so the first n of a larger n are the same draws."""
    from mosaic.backends.sim.backend import SimBackend

    by_id = {r.id: r for r in inst.requests}
    by_model: dict[str, list[str]] = {}
    for r in inst.requests:
        by_model.setdefault(r.model, []).append(r.id)
    gaps = []
    for d in range(1, n + 1):
        outs = (fresh_outcomes(inst, np.random.default_rng([seed, d, 1])) if fresh else
                shuffled_outcomes(inst.workload.outcomes, by_model, np.random.default_rng([seed, d])))
        own_s, other_s = (SimBackend(inst.cluster, inst.profiles).run(p, by_id, outs).makespan_s for p in (own, other))
        gaps.append(own_s / other_s - 1)
    if not gaps:
        return 0, float("nan"), float("nan")
    se = float(np.std(gaps, ddof=1) / np.sqrt(len(gaps))) if len(gaps) > 1 else float("nan")
    return sum(g > 0 for g in gaps), float(np.mean(gaps)), se


def _capped_mean(inst, model: str) -> float:
    """The mean output of `model`'s requests under its length distribution, each capped by the
    room its prompt leaves (E[min(X, room)], on the distribution's quantile grid)."""
    dist = inst.profiles.model(model).output_for(inst.dataset)
    grid = dist.ppf((np.arange(4000) + 0.5) / 4000)
    rooms = inst.profiles.engine.output_room(np.array([r.prompt_tokens for r in inst.requests if r.model == model]))
    rooms, counts = np.unique(rooms, return_counts=True)
    return float(np.average(np.maximum(1, np.minimum.outer(rooms, grid)).mean(axis=1), weights=counts))


def explain(table: pd.DataFrame, seed: int = 0, quick: bool = False,
            progress: Callable[[str], None] | None = None, redraws: int = REDRAWS,
            only: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per loss (see the module doc). The instances are made again from `seed` and
    `quick` (the benchmark's), so the table must come from the same settings and version of the
    generator. `redraws` per loss (0: none); `only`: just these of the lost instances."""
    lost = losses(table)
    if only is not None:
        names = {i for i, *_ in lost}
        missing = [i for i in only if i not in names]
        if missing:
            raise ConfigError(f"--instances: {', '.join(missing)} is not among the table's {len(lost)} losses of "
                              f"{POLICY} ({', '.join(sorted(names)) or 'none'})")
        lost = [t for t in lost if t[0] in only]
    families = sorted(set(table[table.instance.isin([i for i, *_ in lost])].family))
    insts = {i.name: i for i in sb.instances(families, seed, quick)}
    rows = []
    for name, faster, own_sim, faster_sim in lost:
        inst = insts.get(name)
        if inst is None:
            raise ConfigError(f"instance {name} is not among those seed {seed}{' --quick' if quick else ''} makes: "
                              "the table comes from other settings or another version of the benchmark; rerun it")
        reqs = list(inst.requests)

        def planned(policy: str):
            return plan_stage("expert", reqs, inst.workload.expert_models, sb.scheduler_config(policy, inst.k),
                              "scheduled", inst.cluster, inst.profiles, inst.workload)

        problem, own = planned(POLICY)
        _, other = planned(faster)
        same_plan(table, name, POLICY, own, seed, quick)
        same_plan(table, name, faster, other, seed, quick)
        state = ea._from_plan(problem, other, inst.k or len(problem.models))
        priced = ea.predicted_makespan(problem, state) if state is not None else float("nan")
        gaps = []
        for d in problem.models:
            realised = np.mean([inst.workload.outcomes[r].output_tokens for r in d.request_ids]) if d.n else 0
            if realised:
                gaps.append((inst.workload.calibration[d.model].mean_output / realised - 1, d.model, realised))
        gap, model, realised = max(gaps, key=lambda t: (abs(t[0]), t[1])) if gaps else (float("nan"), "", 0.0)
        # The distribution's mean as the generators cap it: each request's prompt leaves its own room.
        draw_gap = (realised / _capped_mean(inst, model) - 1) if model else float("nan")
        wins, redraw_gap, redraw_se = redraw(inst, own, other, redraws, seed)
        fresh_wins, fresh_gap, fresh_se = redraw(inst, own, other, redraws, seed, fresh=True)
        rows.append({"instance": name, "faster": faster, "own_predicted_s": own.predicted_makespan_s,
                     "faster_predicted_s": priced, "own_sim_s": own_sim, "faster_sim_s": faster_sim,
                     "predicted_gap": priced / own.predicted_makespan_s - 1, "sim_gap": own_sim / faster_sim - 1,
                     "calibration_model": model, "calibration_gap": gap, "draw_gap": draw_gap, "redraws": redraws,
                     "redraw_wins": wins, "redraw_gap": redraw_gap, "redraw_se": redraw_se,
                     "fresh_wins": fresh_wins, "fresh_gap": fresh_gap, "fresh_se": fresh_se})
        if progress:
            progress(f"{name}: {faster} {faster_sim:.0f} s against {own_sim:.0f} s simulated; priced "
                     f"{priced:.0f} s against {own.predicted_makespan_s:.0f} s; faster in {wins} of {redraws} "
                     f"redraws, {fresh_wins} of {redraws} fresh draws")
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _gap(mean: float, se: float) -> str:
    return f"{mean:+.1%}" + ("" if np.isnan(se) else f" +- {se:.1%}")


def render(df: pd.DataFrame, command: str, selected: bool = False) -> str:
    wrong = int((df.faster_predicted_s > df.own_predicted_s).sum())
    n = int(df.redraws.max()) if len(df) else 0
    held = int((2 * df.redraw_wins > df.redraws).sum())
    held_fresh = int((2 * df.fresh_wins > df.redraws).sum())
    lines = ["# Where engine_aware loses in the scheduler benchmark", "",
             f"Regenerate: `{command}` (logic: benchmarks/scheduler/losses.py). Instances of the benchmark "
             "table on which a policy that respects K simulates faster than engine_aware; the faster plan "
             "priced by engine_aware's own cost model (its prediction, which chose its plan); calibration "
             "gap: the model whose calibrated mean output is furthest from the mean its requests realise "
             "(calibrated / realised - 1), and its draw gap: the mean its requests realise over the mean of the "
             "distribution they were drawn from (realised / distribution - 1), so a calibration split off "
             "the distribution shows apart from a run whose draw is. Redraws: both plans simulated again with "
             "each model's output lengths shuffled among its own requests (the same shuffle for both: every "
             "model's demand kept, only which request lands on which replica drawn again); fresh draws: every "
             "output drawn anew from its model's length distribution (each model's demand drawn again too; "
             "exact for the generated family, each model's marginal for the presets and paper sets); in how "
             "many the faster plan is still faster, and engine_aware's mean gap over them.", "",
             f"Losses{' (those --instances names)' if selected else ''}: {len(df)}; engine_aware's cost model "
             f"rates the faster plan worse than its own on {wrong} "
             f"(by under 2% on {int((df.predicted_gap.between(0, 0.02)).sum())})"
             + (f"; the faster plan stays faster in most of {n} redraws on {held} of them and in most of {n} "
               f"fresh draws on {held_fresh}." if n else "."), "",
             "| instance | faster policy | predicted s: own / faster's | simulated s: own / faster's | "
             "predicted gap | simulated gap | calibration gap | draw gap | redraws: faster's wins (mean gap +- se) | "
             "fresh draws: faster's wins (mean gap +- se) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in df.itertuples():
        redrawn = f"{r.redraw_wins} of {r.redraws} ({_gap(r.redraw_gap, r.redraw_se)})" if r.redraws else "-"
        fresh = f"{r.fresh_wins} of {r.redraws} ({_gap(r.fresh_gap, r.fresh_se)})" if r.redraws else "-"
        lines.append(f"| {r.instance} | {r.faster} | {r.own_predicted_s:.1f} / {r.faster_predicted_s:.1f} | "
                     f"{r.own_sim_s:.1f} / {r.faster_sim_s:.1f} | {r.predicted_gap:+.1%} | {r.sim_gap:+.1%} | "
                     f"{r.calibration_gap:+.0%} ({r.calibration_model}) | {r.draw_gap:+.0%} | {redrawn} | {fresh} |")
    return "\n".join(lines) + "\n"


def write(table_path: Path, out: Path, seed: int = 0, quick: bool = False, progress: Callable[[str], None] | None = print,
          command: str = "python -m benchmarks.scheduler.losses", redraws: int = REDRAWS,
          only: Sequence[str] | None = None) -> str:
    md = render(explain(read_table(table_path), seed, quick, progress, redraws, only), command, only is not None)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, md)
    return md


def main() -> None:
    ap = ArgumentParser(prog="python -m benchmarks.scheduler.losses", description=__doc__)
    bench_table.add_arguments(ap, RESULTS, "scheduler_losses.md")
    ap.add_argument("--redraws", type=int, default=REDRAWS,
                    help="per loss, both plans simulated again this many times with each model's outputs shuffled "
                         "among its requests, and as many with every output drawn anew from its model's "
                         "length distribution (0: none)")
    ap.add_argument("--instances", nargs="+", default=None, metavar="NAME",
                    help="only these of the table's lost instances (e.g. to draw them again many times)")
    args = ap.parse_args()
    if args.redraws < 0:
        ap.error(f"--redraws must be >= 0 (got {args.redraws})")
    bench_table.check_arguments(ap, args)
    command = rerun_command("-m benchmarks.scheduler.losses", sys.argv[1:])
    bench_table.report(lambda: write(args.table, args.out, args.seed, args.quick, command=command,
                                     redraws=args.redraws, only=args.instances))


if __name__ == "__main__":
    main()
