"""Runtime benchmark: the scheduler benchmark's instances, every policy's plan run under each
runtime (static: the plan's assignment; pull: late binding and replicas added mid-run), and the
router baselines (least_outstanding, p2c) on the data-parallel placement. The bound (lb_k_s, or
lb_no_k_s for a run that loads more than K models on a worker) and the clairvoyant static plan's
makespan (clair_s) are read from the scheduler benchmark's table of the same seed, so they are the
ones that table reports.

Per (policy, runtime): median and worst sim/LB; `> static +1%`: instances where the pair is slower
than the same plan under static by more than 1%; `slower than another`: instances where another
pair that honours K is faster by more than 0.5%. Dispatch overhead: wall time of each runtime
decision (take, should_start, add_replica) in one pull run at 64 workers x 32 models.

    python -m benchmarks.scheduler.runtimes                        # seed 0 (results/scheduler_bench.csv)
    python -m benchmarks.scheduler.runtimes --seed 1 --table results/scheduler_bench_seeds/seed1/scheduler_bench.csv \\
        --out results/scheduler_bench_seeds/seed1
"""
from __future__ import annotations

import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from benchmarks.scheduler import bench as sb
from mosaic.config.schema import RuntimeConfig, SchedulerConfig
from mosaic.core.arguments import ArgumentParser, out_arg, rerun_command
from mosaic.core.errors import ConfigError
from mosaic.core.rundir import write_text_atomic
from mosaic.backends.sim.backend import SimBackend
from mosaic.plan import Plan
from mosaic.run.pipeline import plan_stage, stage_runtime
from mosaic.runtime.base import Runtime
from mosaic.trace import Trace

ROOT = Path(__file__).resolve().parents[2]
RUNTIMES = ("static", "pull")
ROUTERS = ("least_outstanding", "p2c")       # on the data-parallel placement
ROUTER_PLAN = "data_parallel"
SLOWER = 0.01      # "> static": slower than the same plan under static by more than this
TIE = 0.005        # "slower than another": by more than this


def models_per_worker(trace: Trace) -> int:
    seen: dict[int, set[str]] = defaultdict(set)
    for s in trace.sessions:
        seen[s.worker].add(s.model)
    return max((len(v) for v in seen.values()), default=0)


def run_under(inst: sb.Instance, problem, plan: Plan, runtime: str, scheduler: SchedulerConfig, seed: int = 0,
              wrap: Callable[[Runtime], Runtime] | None = None) -> tuple[Trace, Runtime | None]:
    """The plan simulated under `runtime`, made as a run makes it (mosaic/run/pipeline.py stage_runtime)."""
    reqs = list(inst.requests)
    rt = stage_runtime(RuntimeConfig(name=runtime), problem, plan, reqs, inst.workload, scheduler, inst.cluster,
                       inst.profiles, seed)
    if rt is not None and wrap is not None:
        rt = wrap(rt)
    return SimBackend(inst.cluster, inst.profiles).run(plan, {r.id: r for r in reqs}, inst.workload.outcomes, rt), rt


def bench_instance(inst: sb.Instance, policies: Sequence[str], bounds: dict) -> list[dict]:
    rows = []
    base = {"family": inst.family, "instance": inst.name, "n_workers": inst.n_workers, "n_models": inst.n_models,
            "k": sb._k_label(inst.k), "clair_s": bounds.get("clair_s"), "lb_k_s": bounds["lb_k_s"]}
    for pol in policies:
        cfg = sb.scheduler_config(pol, inst.k)
        try:
            problem, plan = plan_stage("expert", list(inst.requests), inst.workload.expert_models, cfg, "scheduled",
                                       inst.cluster, inst.profiles, inst.workload)
        except ConfigError as e:
            rows.append(dict(base, policy=pol, runtime="static", status="n/a", error=str(e).splitlines()[0]))
            continue
        for rt in RUNTIMES + (ROUTERS if pol == ROUTER_PLAN else ()):
            trace, _ = run_under(inst, problem, plan, rt, cfg)
            ok_k = inst.k is None or models_per_worker(trace) <= inst.k
            lb = bounds["lb_k_s"] if ok_k else bounds["lb_no_k_s"]
            rows.append(dict(base, policy=pol, runtime=rt, status="ok", error="", sim_s=trace.makespan_s, lb_s=lb,
                             sim_over_lb=trace.makespan_s / lb, respects_k=ok_k,
                             added=sum(s.added for s in trace.sessions)))
    return rows


def read_bounds(table: Path) -> dict[str, dict]:
    df = pd.read_csv(table)
    first = df.drop_duplicates("instance").set_index("instance")
    return {i: {"lb_k_s": float(r.lb_k_s), "lb_no_k_s": float(r.lb_no_k_s),
                "clair_s": None if pd.isna(r.clair_s) else float(r.clair_s)} for i, r in first.iterrows()}


def bench(insts: Sequence[sb.Instance], bounds: dict[str, dict], policies: Sequence[str],
          progress: Callable[[str], None] | None = print) -> pd.DataFrame:
    rows = []
    for i, inst in enumerate(insts):
        if inst.name not in bounds:
            raise ConfigError(f"instance {inst.name} is not in the scheduler benchmark's table: run "
                              "python -m benchmarks.scheduler with the same --seed first")
        t0 = time.perf_counter()
        got = bench_instance(inst, policies, bounds[inst.name])
        rows += got
        if progress:
            by = {(r["policy"], r["runtime"]): r.get("sim_over_lb") for r in got if r["status"] == "ok"}
            ea = f"engine_aware static {by.get(('engine_aware', 'static'), float('nan')):.3f}x pull " \
                 f"{by.get(('engine_aware', 'pull'), float('nan')):.3f}x"
            progress(f"[{i + 1}/{len(insts)}] {inst.name:44s} {ea}  [{time.perf_counter() - t0:.1f} s]")
    return pd.DataFrame(rows)


class Timed:
    """A runtime whose decisions are timed (wall seconds per call, by decision); everything else is
    the runtime's own."""

    def __init__(self, inner: Runtime):
        self.inner = inner
        self.times: dict[str, list[float]] = defaultdict(list)

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def _timed(self, name, *args):
        t0 = time.perf_counter()
        out = getattr(self.inner, name)(*args)
        self.times[name].append(time.perf_counter() - t0)
        return out

    def take(self, *a):
        return self._timed("take", *a)

    def should_start(self, *a):
        return self._timed("should_start", *a)

    def add_replica(self, *a):
        return self._timed("add_replica", *a)


def dispatch_overhead(n_workers: int = 64, n_models: int = 32, seed: int = 0) -> dict:
    """Per-decision wall time of runtime=pull on a generated instance of n_workers x n_models
    (engine_aware's plan, K = 2)."""
    inst = sb.make_instance(f"dispatch-N{n_workers}-M{n_models}", n_workers, n_models, 2, 80.0, "zipf", "paper",
                            sb.REQUESTS_PER_WORKER * n_workers, seed)
    cfg = sb.scheduler_config("engine_aware", inst.k)
    problem, plan = plan_stage("expert", list(inst.requests), inst.workload.expert_models, cfg, "scheduled",
                               inst.cluster, inst.profiles, inst.workload)
    t0 = time.perf_counter()
    _, rt = run_under(inst, problem, plan, "pull", cfg, wrap=Timed)
    wall = time.perf_counter() - t0
    all_t = np.array([t for ts in rt.times.values() for t in ts])
    out = {"n_workers": n_workers, "n_models": n_models, "requests": len(inst.requests), "run_s": wall,
           "decisions": len(all_t), "median_ms": 1e3 * float(np.median(all_t)),
           "p99_ms": 1e3 * float(np.quantile(all_t, 0.99)), "max_ms": 1e3 * float(all_t.max())}
    for name, ts in sorted(rt.times.items()):
        out[f"{name}_calls"] = len(ts)
        out[f"{name}_p99_ms"] = 1e3 * float(np.quantile(ts, 0.99))
    return out


def beaten(df: pd.DataFrame) -> pd.Series:
    """Per row: another pair that honours K is faster on its instance by more than TIE."""
    ok = df[df.status == "ok"]
    best = ok[ok.respects_k].groupby("instance").sim_s.min()
    return ok.apply(lambda r: best.get(r.instance, np.inf) < r.sim_s * (1 - TIE), axis=1)


def worse_than_static(df: pd.DataFrame) -> pd.Series:
    ok = df[df.status == "ok"]
    static = ok[ok.runtime == "static"].set_index(["instance", "policy"]).sim_s
    return ok.apply(lambda r: r.sim_s > static.get((r.instance, r.policy), np.inf) * (1 + SLOWER), axis=1)


def render(df: pd.DataFrame, dispatch: dict | None, command: str, wall_s: float) -> str:
    ok = df[df.status == "ok"].copy()
    ok["beaten"] = beaten(df)
    ok["worse"] = worse_than_static(df)
    lines = ["# Runtime benchmark: each plan under static and pull, router baselines on the data-parallel placement",
             "", f"Regenerate with `{command}` (wall time {wall_s / 60:.1f} min). Logic: benchmarks/scheduler/runtimes.py; "
             "rows: runtime_bench.csv. Bounds and the clairvoyant static plan (`clair_s`) from the scheduler "
             "benchmark's table of the same seed.", "",
             "| policy | runtime | inst. | median sim/LB | worst sim/LB | > static +1% | slower than another | "
             "median replicas added | breaks K |", "|---|---|---|---|---|---|---|---|---|"]
    for (pol, rt), g in ok.groupby(["policy", "runtime"], sort=True):
        lines.append(f"| {pol} | {rt} | {len(g)} | {g.sim_over_lb.median():.3f} | {g.sim_over_lb.max():.3f} | "
                     f"{int(g.worse.sum()) if rt != 'static' else '-'} | {int(g.beaten.sum())} | "
                     f"{g.added.median():.0f} | {int((~g.respects_k).sum())} |")
    per_inst = ok.drop_duplicates("instance").set_index("instance")
    ratio = (per_inst.clair_s / per_inst.lb_k_s).dropna()
    if len(ratio):
        lines += ["", f"Clairvoyant static plan (true lengths, within K): median {ratio.median():.3f}x, "
                      f"worst {ratio.max():.3f}x the bound over {len(ratio)} instances."]
    if dispatch:
        d = dispatch
        lines += ["", f"Dispatch overhead (runtime=pull, engine_aware's plan, {d['n_workers']} workers x "
                      f"{d['n_models']} models, {d['requests']} requests): {d['decisions']} decisions, median "
                      f"{d['median_ms']:.4f} ms, p99 {d['p99_ms']:.4f} ms, max {d['max_ms']:.3f} ms per decision "
                      f"(the whole simulated run {d['run_s']:.1f} s)."]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    ap = ArgumentParser(prog="python -m benchmarks.scheduler.runtimes", description=__doc__)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--table", type=Path, default=ROOT / "results" / "scheduler_bench.csv",
                    help="the scheduler benchmark's table of the same seed (its bounds and clair_s)")
    ap.add_argument("--out", type=Path, default=ROOT / "results")
    ap.add_argument("--families", nargs="+", default=list(sb.FAMILIES), choices=sb.FAMILIES)
    ap.add_argument("--policies", nargs="+", default=None)
    ap.add_argument("--quick", action="store_true", help="the tests' tiny instances")
    ap.add_argument("--no-dispatch", action="store_true", help="skip the 64 x 32 dispatch timing")
    args = ap.parse_args(argv)
    out_arg(ap, args.out)
    if not args.table.is_file():
        ap.error(f"--table {args.table}: no such file; run python -m benchmarks.scheduler --seed {args.seed} first")
    t0 = time.perf_counter()
    insts = sb.instances(args.families, args.seed, args.quick, print)
    df = bench(insts, read_bounds(args.table), args.policies or sb.default_policies())
    args.out.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out / "runtime_bench.csv", index=False, float_format="%.4f", lineterminator="\n")
    dispatch = None if args.no_dispatch else dispatch_overhead()
    command = rerun_command("-m benchmarks.scheduler.runtimes", sys.argv[1:] if argv is None else list(argv))
    md = render(df, dispatch, command, time.perf_counter() - t0)
    write_text_atomic(args.out / "runtime_bench.md", md)
    print(md)


if __name__ == "__main__":
    main()
