"""Scheduler benchmark: instances over N, M, demand skew, model mix, K and memory; a lower bound on
the expert stage's makespan; and, per instance and policy, the simulated makespan over that bound,
the policy's own prediction error, its solve time and whether two runs give the same plan.

`python -m benchmarks.scheduler` runs `write`, which writes results/scheduler_bench.md and
results/scheduler_bench.csv.

Families of instances (`instances`):

* "generated": a seeded sample of the grid N x M x skew x mix x K x memory (`generated_shapes`).
  The M expert models are clones of paper_a100's six experts (reasoning clones from its two
  reasoning models, instruct clones from its four instruct ones, in the mix's proportion), each with
  its output-length mean scaled by a seeded log-uniform factor in [0.5, 2] (the shape and cap are
  the original's; the fitted session regression is dropped, since it was fitted for the original
  lengths, so the policies cost clones with the analytic predictor). Demand over the models is
  uniform or Zipf (s = 1.1, ranks in seeded order); each query sends three requests drawn with
  replacement, about 150 x N requests in all, prompts lognormal around 250 tokens; outcomes are a
  seeded draw from each model's lengths, calibration statistics a separate seeded draw of 350
  answers per model (mosaic.workload.calibration.from_profiles). Clusters are uniform: memory is
  80 or 40 GiB per worker and every model fits at both, so memory changes the KV capacity (how many
  requests batch together), not where a model may go.
* "presets": synth_mmlu_pro, synth_medmcqa, synth_gpqa at N in 4..64, K = 2, built by the run
  builder exactly as `experiments/run.py workload=... cluster.n_workers=N` builds them.
* "paper": the real question sets mmlu_pro, medmcqa, gpqa at N = 4, K = 2 (if ../shared/data exists).

Every policy plans the expert stage with `mosaic.run.pipeline.plan_stage` (as a run plans it, from
the calibration statistics only) and the plan is replayed on the simulator (mosaic.backends.sim.backend.SimBackend)
with the instance's outcomes. The lower bound is described at `lower_bound`.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from benchmarks.scheduler.clairvoyant import clairvoyant_plan
from benchmarks.scheduler.packing_bound import NODE_LIMIT, Need, packing_floor
from mosaic.engine.floor import StepFloor
from mosaic.cluster import Cluster
from mosaic.config.schema import SchedulerConfig
from mosaic.core.errors import ConfigError
from mosaic.costs.predict import fitting_workers
from mosaic.costs.problem import StageProblem, makespan_draws
from mosaic.plan import Plan
from mosaic.profiles import ProfileSet, kv_capacity_tokens, load_profiles, load_time_s
from mosaic.run.builder import CONF_DIR, build_run, compose
from mosaic.run.graph_setup import dataset_of
from mosaic.run.pipeline import plan_stage
from mosaic.schedulers import available
from mosaic.workload.answer_model import EXPERTS
from mosaic.workload.calibration import from_profiles
from mosaic.workload.types import Outcome, Query, Request, Workload
from mosaic.engine import run_session
from mosaic.backends.sim.backend import SimBackend

ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = ROOT.parent / "shared" / "data"

FAMILIES = ("generated", "presets", "paper")
BASE_PROFILES = "paper_a100"
GRID_N = (4, 8, 16, 32, 64)
GRID_M = (6, 12, 24, 32)
GRID_K = (1, 2, 3, None)
SKEWS = ("uniform", "zipf")
MIXES = {"instruct": 1 / 6, "paper": 2 / 6, "reasoning": 4 / 6}   # share of reasoning models
MEMORIES = (80.0, 40.0)
N_GENERATED = 32
ZIPF_S = 1.1
SLOTS = 3                   # requests per query
REQUESTS_PER_WORKER = 150
PROMPT_MEDIAN = 250.0
CALIBRATION_N = 350
SCALE_RANGE = (0.5, 2.0)    # output-mean factor of a clone (log-uniform)
PRESETS = ("synth_mmlu_pro", "synth_medmcqa", "synth_gpqa")
PAPER = ("mmlu_pro", "medmcqa", "gpqa")
PAPER_K = 2
# --quick: tiny generated shapes (N, M, K, skew, mix, memory), ~100 requests each; presets and
# paper workloads at N = 4 cut to QUICK_QUERIES queries.
QUICK_SHAPES = (
    (2, 2, 1, "uniform", "paper", 80.0),
    (4, 4, 1, "zipf", "reasoning", 40.0),
    (2, 6, 3, "zipf", "paper", 80.0),
    (4, 6, 2, "uniform", "instruct", 40.0),
    (4, 12, 3, "zipf", "reasoning", 80.0),
    (2, 3, None, "uniform", "reasoning", 40.0),
)
QUICK_REQUESTS = 96
QUICK_QUERIES = 40
SKIP_POLICIES = ("tensor_parallel",)   # the aggregator's TP placement, not an expert-stage policy
CSV_DIGITS = 4


# ----------------------------------------------------------------------------- instances

@dataclass(frozen=True)
class Instance:
    family: str
    name: str
    k: int | None            # scheduler.max_models_per_worker every policy gets
    skew: str                # "uniform" | "zipf" | "router" (the workload's own routing)
    mix: str                 # "instruct" | "paper" | "reasoning" (share of reasoning models)
    cluster: Cluster
    profiles: ProfileSet
    workload: Workload
    requests: tuple[Request, ...]
    # The dataset whose profile lengths the workload's outputs were drawn from (None: each model's
    # default distribution, as the generated family draws them).
    dataset: str | None = None

    @property
    def n_workers(self) -> int:
        return self.cluster.n

    @property
    def n_models(self) -> int:
        return len({r.model for r in self.requests})

    @property
    def memory_gib(self) -> float:
        return min(w.memory_gib for w in self.cluster.workers)


def _k_label(k: int | None) -> str:
    return "none" if k is None else str(k)


def make_instance(name: str, n_workers: int, n_models: int, k: int | None, memory_gib: float, skew: str,
                  mix: str, n_requests: int, seed: int, family: str = "generated") -> Instance:
    """One generated instance (see the module docstring); the same arguments give the same instance."""
    if skew not in SKEWS or mix not in MIXES:
        raise ConfigError(f"instance {name}: skew must be one of {SKEWS}, mix one of {sorted(MIXES)}")
    if n_models < 2:
        raise ConfigError(f"instance {name}: needs at least 2 models (got {n_models})")
    entropy = [seed, n_workers, n_models, 0 if k is None else k, int(memory_gib), SKEWS.index(skew),
               list(MIXES).index(mix), n_requests]
    r_models, r_demand, r_prompt, r_out, r_cal = (np.random.default_rng(s) for s in
                                                  np.random.SeedSequence(entropy).spawn(5))
    base = load_profiles(BASE_PROFILES)
    reasoning = [m for m in EXPERTS if base.model(m).kind == "reasoning"]
    instruct = [m for m in EXPERTS if base.model(m).kind != "reasoning"]
    n_r = min(n_models - 1, max(1, round(n_models * MIXES[mix])))
    kinds = r_models.permutation([True] * n_r + [False] * (n_models - n_r))
    clones = {}
    used = Counter()
    for i, is_r in enumerate(kinds):
        pool = reasoning if is_r else instruct
        src = base.model(pool[used[is_r] % len(pool)])
        used[is_r] += 1
        factor = float(np.exp(r_models.uniform(*np.log(SCALE_RANGE))))
        target = min(src.output.mean() * factor, src.output.cap - 1.0)
        clone = replace(src, name=f"{src.name}-{i:02d}", output=src.output.calibrated_to_mean(target),
                        outputs={}, session_fit=None)
        clones[clone.name] = clone
    profiles = ProfileSet(base.engine, clones, base.datasets)
    names = list(clones)
    device = f"A100-{int(memory_gib)}GB"
    cluster = Cluster.uniform(n_workers, memory_gib, device)
    for m in names:
        if not fitting_workers(profiles.model(m), profiles.engine, cluster):
            raise ConfigError(f"instance {name}: model {m} does not fit {memory_gib} GiB")

    if skew == "uniform":
        p = np.full(n_models, 1.0 / n_models)
    else:
        w = 1.0 / (r_demand.permutation(n_models) + 1.0) ** ZIPF_S
        p = w / w.sum()
    n_queries = max(1, math.ceil(n_requests / SLOTS))
    picks = r_demand.choice(n_models, size=n_queries * SLOTS, p=p)
    counts = np.bincount(picks, minlength=n_models)
    for m in range(n_models):   # every model of the pool gets at least one request
        if counts[m] == 0:
            top = int(np.argmax(counts))
            slot = int(np.flatnonzero(picks == top)[-1])
            picks[slot] = m
            counts[top] -= 1
            counts[m] += 1
    prompts = np.clip(np.rint(r_prompt.lognormal(np.log(PROMPT_MEDIAN), 0.4, size=n_queries)),
                      16, 4096).astype(int)
    queries = tuple(Query(f"{name}-q{i:05d}", "bench", int(prompts[i]), "A",
                          tuple(names[j] for j in picks[i * SLOTS:(i + 1) * SLOTS]))
                    for i in range(n_queries))
    workload = Workload(name, seed, queries, tuple(names), names[0])
    requests = workload.expert_requests()
    by_model: dict[str, list[Request]] = defaultdict(list)
    for r in requests:
        by_model[r.model].append(r)
    drawn = draw_outputs(profiles, None, {m: by_model[m] for m in names}, r_out)
    outcomes = {i: Outcome(o, None) for i, o in drawn.items()}
    cal_prompts = np.clip(np.rint(r_cal.lognormal(np.log(PROMPT_MEDIAN), 0.4, size=CALIBRATION_N)),
                          16, 4096).astype(int)
    calibration = from_profiles(profiles, names, None, cal_prompts, r_cal,
                                f"benchmark calibration draw: {CALIBRATION_N} answers per model")
    workload = replace(workload, outcomes=outcomes, calibration=calibration)
    return Instance(family, name, k, skew, mix, cluster, profiles, workload, requests)


def generated_shapes(seed: int = 0, n: int = N_GENERATED) -> list[tuple]:
    """A seeded sample of (N, M, K, skew, mix, memory) from the grid, K only where K*N >= M. Every N
    gets n // len(GRID_N) shapes (the smallest Ns one more while n is not used up), so every N is
    covered at least 5 times at n = 32; within an N, each next shape is the one whose values of M,
    K, skew, mix and memory (and M with K) are the least used so far, ties broken by a seeded
    random key, so the sample spreads over the whole grid."""
    rng = np.random.default_rng([seed, 101])
    grid = [(nw, m, k, s, mix, mem) for nw in GRID_N for m in GRID_M for k in GRID_K for s in SKEWS
            for mix in MIXES for mem in MEMORIES if k is None or k * nw >= m]
    key = dict(zip(grid, rng.random(len(grid))))
    quota = {nw: n // len(GRID_N) + (1 if i < n % len(GRID_N) else 0) for i, nw in enumerate(GRID_N)}
    seen: Counter = Counter()
    chosen = []
    for nw in GRID_N:
        for _ in range(quota[nw]):
            cands = [c for c in grid if c[0] == nw and c not in chosen]
            best = min(cands, key=lambda c: (seen[("M", c[1])] + seen[("K", c[2])] + seen[("skew", c[3])]
                                             + seen[("mix", c[4])] + seen[("mem", c[5])]
                                             + seen[("MK", c[1], c[2])], key[c]))
            chosen.append(best)
            seen.update([("M", best[1]), ("K", best[2]), ("skew", best[3]), ("mix", best[4]),
                         ("mem", best[5]), ("MK", best[1], best[2])])
    return chosen


def draw_outputs(profiles: ProfileSet, dataset: str | None, by_model: dict[str, Sequence[Request]],
                 rng: np.random.Generator) -> dict[str, int]:
    """Output tokens of every request, drawn from its model's length distribution on `dataset`
    (None: the model's default), capped by the room its prompt leaves, at least 1. Models in the
    mapping's order, then request order: a fixed draw sequence for a seeded `rng`."""
    out = {}
    for m, reqs in by_model.items():
        draw = profiles.model(m).output_for(dataset).sample(rng, len(reqs))
        room = profiles.engine.output_room(np.array([r.prompt_tokens for r in reqs]))
        for r, o in zip(reqs, np.minimum(draw, room)):
            out[r.id] = int(max(1, o))
    return out


def generated_instances(seed: int = 0, quick: bool = False) -> list[Instance]:
    shapes = QUICK_SHAPES if quick else generated_shapes(seed)
    out = []
    for i, (nw, m, k, skew, mix, mem) in enumerate(shapes):
        n_req = QUICK_REQUESTS if quick else REQUESTS_PER_WORKER * nw
        name = f"g{i:02d}-N{nw}-M{m}-K{_k_label(k)}-{skew}-{mix}-{int(mem)}G"
        out.append(make_instance(name, nw, m, k, mem, skew, mix, n_req, seed))
    return out


def _from_run(family: str, workload: str, n_workers: int, k: int | None, seed: int,
              n_queries: int | None) -> Instance:
    overrides = [f"workload={workload}", f"cluster.n_workers={n_workers}", f"seed={seed}"]
    if n_queries is not None:
        overrides.append(f"workload.n_queries={n_queries}")
    run = build_run(compose(overrides))
    name = f"{workload}-N{n_workers}" + (f"-q{n_queries}" if n_queries is not None else "")
    return Instance(family, name, k, "router", "paper", run.cluster, run.profiles, run.workload,
                    run.workload.expert_requests(), dataset_of(run.config.workload))


def preset_instances(seed: int = 0, quick: bool = False) -> list[Instance]:
    """The synthetic presets as the CLI builds them, at every N of the grid; K = 2 (the paper's)
    where 2N covers the six experts."""
    out = []
    for wl in PRESETS:
        for nw in ((4,) if quick else GRID_N):
            out.append(_from_run("presets", wl, nw, 2 if 2 * nw >= len(EXPERTS) else None, seed,
                                 QUICK_QUERIES if quick else None))
    return out


def paper_instances(seed: int = 0, quick: bool = False) -> list[Instance]:
    """The real question sets at N = 4, K = 2; none when ../shared/data is absent."""
    if not SHARED_DATA.is_dir():
        return []
    return [_from_run("paper", ds, 4, PAPER_K, seed, QUICK_QUERIES if quick else None) for ds in PAPER]


def instances(families: Iterable[str] = FAMILIES, seed: int = 0, quick: bool = False,
              progress: Callable[[str], None] | None = None) -> list[Instance]:
    makers = {"generated": generated_instances, "presets": preset_instances, "paper": paper_instances}
    out = []
    for fam in families:
        if fam not in makers:
            raise ConfigError(f"--families: unknown family '{fam}'; choose from {list(makers)}")
        t0 = time.perf_counter()
        got = makers[fam](seed, quick)
        if progress:
            progress(f"built {len(got)} {fam} instances in {time.perf_counter() - t0:.1f} s"
                     + (" (../shared/data absent)" if fam == "paper" and not got else ""))
        out.extend(got)
    return out


# ----------------------------------------------------------------------------- lower bound

@dataclass(frozen=True)
class ModelBound:
    load_s: float       # l_m: engine start-up of one session
    unload_s: float     # u_m: engine shutdown before the worker's next session
    session_s: float    # S_m: all of m's requests in one session on an idle worker (fastest order tried)
    longest_s: float    # b_m: m's longest single request alone
    shortest_s: float   # t_m: a request with m's shortest prompt and shortest output, alone
    max_workers: int    # r_max_m = min(N, workers m fits on, K*N - (M - 1))
    floor: StepFloor | None = None   # the step floor of m's requests (mosaic/engine/floor.py)


@dataclass(frozen=True)
class LowerBound:
    lb_s: float
    work_s: float        # (a) total work spread evenly
    single_s: float      # (b) the longest request
    replica_s: float     # (c) K- and memory-aware replication bound (contains (a) and (b))
    pigeonhole_s: float  # (d) a worker holds ceil(M/N) models
    models: dict[str, ModelBound]
    steps_s: float = 0.0  # (e) (c) with replicas priced by the step floor (contains (c))
    packing_s: float = 0.0  # (f) (e)'s replicas packed onto the workers (0: not computed)

    @property
    def binding(self) -> str:
        terms = {"work": self.work_s, "single": self.single_s, "replica": self.replica_s,
                 "pigeonhole": self.pigeonhole_s, "steps": self.steps_s, "packing": self.packing_s}
        return max(terms, key=lambda t: (terms[t], -list(terms).index(t)))


def session_batch(inst: Instance, reqs: Sequence[Request]) -> list[tuple[str, int, int]]:
    """(id, prompt, output) as the simulator runs them (output capped by the context window)."""
    eng = inst.profiles.engine
    return [(r.id, r.prompt_tokens,
             max(1, min(inst.workload.outcomes[r.id].output_tokens, eng.output_room(r.prompt_tokens))))
            for r in reqs]


def model_batches(inst: Instance) -> dict[str, list[tuple[str, int, int]]]:
    """Per model, in order of first request, its requests as `session_batch` gives them."""
    by_model: dict[str, list[Request]] = defaultdict(list)
    for r in inst.requests:
        by_model[r.model].append(r)
    return {m: session_batch(inst, reqs) for m, reqs in by_model.items()}


def model_bounds(inst: Instance) -> dict[str, ModelBound]:
    """Per model, the simulated single-session quantities the bound is built from."""
    eng = inst.profiles.engine
    batches = model_batches(inst)
    m_count = len(batches)
    out = {}
    for m, batch in batches.items():
        prof = inst.profiles.model(m)
        fits = fitting_workers(prof, eng, inst.cluster)
        mems = sorted({w.memory_gib for w in inst.cluster.workers if w.id in fits})
        if not mems:
            raise ConfigError(f"{inst.name}: model {m} fits no worker")
        longest_first = sorted(batch, key=lambda b: (-b[2], -b[1]))
        orders = (batch, sorted(batch, key=lambda b: -b[2]), longest_first, sorted(batch, key=lambda b: b[2]))
        session = float(min(run_session(prof, eng, mem, o) for mem in mems for o in orders))
        # Longest single request: the few longest outputs and the longest prompt (the max over
        # them is still a valid bound if the true argmax were missed, only a weaker one).
        cands = set(longest_first[:4])
        cands.add(max(batch, key=lambda b: (b[1], b[2])))
        longest = float(max(run_session(prof, eng, mems[-1], [c]) for c in cands))
        shortest = float(run_session(prof, eng, mems[-1], [("min", min(b[1] for b in batch),
                                                             min(b[2] for b in batch))]))
        out[m] = ModelBound(load_time_s(prof, eng), prof.unload_time_s, session, longest, shortest,
                            max_workers(inst, m, m_count),
                            StepFloor.of(prof, eng, batch, kv_capacity_tokens(prof, eng, mems[-1])))
    return out


def max_workers(inst: Instance, model: str, n_models: int) -> int:
    """r_max_m = min(N, workers the model fits on, K N - (M - 1))."""
    n, k = inst.n_workers, inst.k
    fits = fitting_workers(inst.profiles.model(model), inst.profiles.engine, inst.cluster)
    return min(n, len(fits), (k * n - (n_models - 1)) if k is not None else n)


def lower_bound(inst: Instance, models: dict[str, ModelBound] | None = None,
                packing_nodes: int = NODE_LIMIT) -> LowerBound:
    """A lower bound on the simulated expert-stage makespan of ANY plan of the instance's requests
    (any placement, replication, split and order, within K and memory), by any policy.

    On the simulator a worker runs its sessions back to back after `s0` (engine.worker_startup_s);
    a session of model m costs l_m (load) + T(requests) and, if another follows on that worker,
    u_m (unload). T(R) is the engine's time for the request set R submitted at once on an idle
    worker, load excluded (mosaic.engine.run_session). Two properties of T are used:

    P2 (monotone; provable from the step model): a session containing request r takes at least
      T({r}): r needs one prefill and o_r - 1 decode steps, every step's cost grows with the number
      of sequences, tokens and context in it, and a preemption only adds steps. Likewise T({r}) grows
      with r's prompt and output, so t_m = T({(min prompt of m, min output of m)}) is at most any of
      m's single-request sessions.
    P1 (subadditive; assumed, checked empirically): splitting a set of requests into several
      sessions never makes the sum of their times smaller than one session of all of them:
      T(R_1) + ... + T(R_r) >= T(R_1 u ... u R_r). Continuous batching shares each step's fixed
      cost among the sequences in it, so merging sessions saves time; the step model's slight
      convexity in tokens (prefills beyond 2048 tokens) and preemptions could in principle break it,
      so S_m is the fastest of four orders of the merged session (request order, longest first,
      longest first with the longer prompt first among equal outputs, shortest first) and
      tests/benchmarks/scheduler/test_bench.py checks both P1 on random splits and the bound itself
      against every registered policy's simulated plans and the clairvoyant reference's. The order
      moves a session's time a little even where nothing else differs (LlamaR1-07 of g20: 816.65107 s
      longest first, 816.65092 s with the prompt tie-break, which the clairvoyant plan runs), so
      with three orders that plan simulated 0.0002 s below the bound of g20 (K = 1, one model per worker).

    Let r_m be the number of distinct workers that run model m (1 <= r_m <= r_max_m). Sessions of m
    on one worker cost at least one load plus, by P1, T of their union, so by P1 again the workers
    of m carry at least S_m of m's engine time in total, and the busiest of them at least S_m / r_m.
    Every worker holds at most K distinct models, so sum_m r_m <= K N, and therefore
    r_max_m = min(N, |workers m fits|, K N - (M - 1)): the other M - 1 models need a slot each.
    Then any plan's makespan C satisfies, for its own r:

      (i)   C >= s0 + l_m + S_m / r_m                      for every m (the busiest replica of m);
      (ii)  C >= s0 + l_m + b_m                            for every m (P2: b_m = max_r T({r}));
      (iii) N (C - s0) >= sum_m (r_m l_m + S_m) + u_min (sum_m r_m - N)+  (all busy time; a worker
            with j distinct models has at least j - 1 unloads);
      (iv)  sum_m r_m <= K N and r_m <= r_max_m.

    The terms reported:
      (a) work_s     = s0 + (sum_m (l_m + S_m) + u_min (M - N)+) / N: (iii) with every r_m = 1;
      (b) single_s   = s0 + max_m (l_m + b_m): (ii);
      (c) replica_s  = the least C for which SOME integer r satisfies (i)-(iv): since every plan's
          own r does, no plan is faster. Smaller r_m only helps (iii) and (iv), so for a candidate C
          the least r_m = ceil(S_m / (C - s0 - l_m)) decides, feasibility is monotone in C, and a
          bisection over C finds it. It contains (a) and (b), and is where K and memory enter:
          K = 1 with M = N forces r_m = 1, so C >= max_m (s0 + l_m + S_m), which (a) misses. The value returned is the bisection's infeasible end,
          within 1e-10 (relative) below that least C, so rounding can only lower it. Note the
          tempting max_m (l_m + S_m / r_max_m) IS valid by (i) (the busiest replica carries at
          least the mean, whatever the split, so an uneven split only raises it), but it is weaker
          than (c), which also charges the extra loads of replication to (iii).
      (d) pigeonhole_s: some worker holds q = ceil(M / N) distinct models, each costing at least
          l_m + t_m (P2) plus q - 1 unloads: s0 + the q smallest (l_m + t_m) + (q - 1) u_min.

    A term not used: charging each model at r_max_m replicas with the simulated time of an even
    share, T(R_m / r_max_m), instead of S_m / r_max_m. Which requests a replica gets (and how many)
    is the plan's choice, so T of one particular even share bounds nothing; no property of T makes
    it a bound, so it is left out even though no simulated plan was seen to beat it.
      (e) steps_s: (c) with each model's replicas also priced by its step floor
          (mosaic/engine/floor.py, proved there from the step model): at a candidate C, r_m is
          at least the floor's least replica count for the slack C - s0 - l_m, and m's busy time in
          (iii) at least the floor's busy time (every session pays a step's fixed cost per token of
          its longest output, so splitting costs time that S_m / r_m does not see). Contains (c).
      (f) packing_s: (e)'s replica counts and busy times with whole sessions packed onto the N
          workers, at most K models each (benchmarks/scheduler/packing_bound.py: the largest C at which
          no packing exists, proven by a count of the K N model slots, by a partition check of
          whole sessions where M = K N, or by HiGHS within `packing_nodes` branch-and-bound nodes
          per solve; 0 skips it). (a)-(e) check the workers' total time, not that sessions fit: on
          4 workers holding 3 of 12 models each, the busiest model's worker serves two more.
    lb_s = max((a), (b), (c), (d), (e), (f)).

    Memory enters twice: r_max_m counts only the workers m fits on, and S_m is simulated at the
    memory of those workers (their KV capacity, hence how many requests batch; with workers of
    different sizes, the fastest of them). A plan that ignores K (a policy without a K setting) is
    not bound by (iv); `bench` holds such plans to this bound computed with K = None.
    """
    models = models if models is not None else model_bounds(inst)
    n = inst.n_workers
    m_count = len(models)
    k = inst.k
    s0 = inst.profiles.engine.worker_startup_s
    if k is not None and k * n < m_count:
        inf = float("inf")
        return LowerBound(inf, inf, inf, inf, inf, models)
    u_min = min(b.unload_s for b in models.values())
    mb = list(models.values())
    work = s0 + (sum(b.load_s + b.session_s for b in mb) + u_min * max(0, m_count - n)) / n
    single = s0 + max(b.load_s + b.longest_s for b in mb)

    def model_need(b: ModelBound, slack: float, steps: bool) -> tuple[int, float] | None:
        """(least replicas, least engine time of them all) of one model at that slack per replica."""
        if slack <= 0 or slack < b.longest_s:
            return None
        r = max(1, math.ceil(b.session_s / slack - 1e-12))
        work = b.session_s
        if steps and b.floor is not None:
            need = b.floor.need(slack)
            if need is None:
                return None
            r, work = max(r, need[0]), max(work, need[1])
        return (r, work) if r <= b.max_workers else None

    def least_r(c: float, steps: bool) -> list[tuple[int, float]] | None:
        avail = c - s0
        got = []
        for b in mb:
            need = model_need(b, avail - b.load_s, steps)
            if need is None:
                return None
            got.append(need)
        total = sum(r for r, _ in got)
        if k is not None and total > k * n:
            return None
        busy = sum(r * b.load_s + work for b, (r, work) in zip(mb, got)) + u_min * max(0, total - n)
        return got if busy <= n * avail * (1 + 1e-12) else None

    def least_c(steps: bool) -> float:
        lo, hi = 0.0, s0 + sum(b.load_s + b.session_s + b.unload_s for b in mb) + 1.0
        for _ in range(64):   # a floor above a model's own session (never seen) needs a larger C
            if least_r(hi, steps) is not None:
                break
            lo, hi = hi, 2.0 * hi
        for _ in range(200):
            if hi - lo <= 1e-10 * hi:
                break
            mid = 0.5 * (lo + hi)
            if least_r(mid, steps) is None:
                lo = mid
            else:
                hi = mid
        return lo   # infeasible, so below the least feasible C, and within 1e-10 of it

    replica, steps_c = least_c(False), least_c(True)
    q = math.ceil(m_count / n)
    pigeon = s0 + sum(sorted(b.load_s + b.shortest_s for b in mb)[:q]) + (q - 1) * u_min if q >= 2 else 0.0
    start = max(work, single, replica, pigeon, steps_c)
    packing = 0.0
    if packing_nodes:
        fits = {m: frozenset(fitting_workers(inst.profiles.model(m), inst.profiles.engine, inst.cluster))
                for m in models}

        def needs_at(c: float) -> list[Need] | None:
            got = least_r(c, True)
            if got is None:
                return None
            return [Need(r, w, b.load_s, b.load_s + b.shortest_s, b.load_s + b.longest_s, fits[m])
                    for (m, b), (r, w) in zip(models.items(), got)]

        packing = packing_floor(start, needs_at, n, k if k is not None else m_count, s0, u_min, packing_nodes)
    return LowerBound(max(start, packing), work, single, replica, pigeon, models, steps_c, packing)


# ----------------------------------------------------------------------------- benchmark

def scheduler_config(policy: str, k: int | None) -> SchedulerConfig:
    """The policy's config as the CLI composes it (mosaic/conf/scheduler/<policy>.yaml where there is one,
    else the schema's defaults), with K set."""
    path = CONF_DIR / "scheduler" / f"{policy}.yaml"
    raw = (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}
    fields = {f: v for f, v in raw.items() if f in SchedulerConfig.__dataclass_fields__}
    fields.update(name=policy, max_models_per_worker=k)
    return SchedulerConfig(**fields)


def default_policies() -> list[str]:
    return [p for p in available() if p not in SKIP_POLICIES]


def plan_hash(plan: Plan) -> str:
    """sha256 of the plan's worker -> sessions -> request ids, as canonical JSON (16 hex digits)."""
    canon = [[wp.worker, [[s.model, list(s.request_ids), list(s.workers)] for s in wp.sessions]]
             for wp in sorted(plan.workers, key=lambda w: w.worker)]
    return hashlib.sha256(json.dumps(canon, separators=(",", ":")).encode()).hexdigest()[:16]


def _solver_note(plan: Plan) -> str:
    s = plan.solver
    if s is None:
        return ""
    return "/".join(x for x in (s.source, s.limit or "", "fallback" if s.fallback else "") if x)


def respects_k(plan: Plan, k: int | None) -> bool:
    """Whether no worker of the plan loads more than K distinct models."""
    return k is None or all(len({s.model for s in wp.sessions}) <= k for wp in plan.workers)


# The prediction's band: these quantiles of its scenarios' makespans.
BAND = (0.1, 0.9)
# The issue's accuracy target: a prediction within this relative error of the simulated makespan.
TOLERANCE = 0.10


def prediction_draws(problem: StageProblem, plan: Plan) -> np.ndarray | None:
    """The makespans the plan's prediction averages over (its scenarios of which requests each
    replica draws: mosaic/costs/problem.py makespan_draws); None for a point prediction (a policy
    planned without session curves)."""
    return makespan_draws([[(problem.demand(s.model), len(s.request_ids)) for s in wp.sessions]
                           for wp in plan.workers])


def prediction_band(draws: np.ndarray) -> tuple[float, float]:
    """The BAND quantiles of a plan's prediction draws."""
    return tuple(float(np.quantile(draws, q)) for q in BAND)


def chance_within(draws: np.ndarray, predicted: float, tol: float = TOLERANCE) -> float:
    """The chance that `predicted` lies within `tol` of a makespan drawn from `draws`, i.e.
    |predicted / sim - 1| <= tol: how often a prediction can meet the accuracy target when the run's
    makespan is as random as the prediction says. The mean over instances is the share of them a
    calibrated predictor is expected to get within the target (the observed share is one draw)."""
    d = np.asarray(draws, dtype=float)
    return float(np.mean((d >= predicted / (1.0 + tol)) & (d <= predicted / (1.0 - tol))))


def sim_quantile(draws: np.ndarray, sim: float) -> float:
    """Where the simulated makespan falls in the prediction's distribution (the share of draws below
    it; the probability integral transform). Over instances, uniform on [0, 1] if the predicted
    distribution is calibrated; piled at 0 and 1 if too narrow, in the middle if too wide."""
    return float(np.mean(np.asarray(draws, dtype=float) < sim))


def bench_instance(inst: Instance, policies: Sequence[str], lb: LowerBound | None = None,
                   lb_free: LowerBound | None = None) -> list[dict]:
    """One row per policy for one instance (see `bench`). lb: the instance's bound (with its K);
    lb_free: the bound without K, which a plan that ignores K is measured against."""
    lb = lb if lb is not None else lower_bound(inst)
    if lb_free is None:
        lb_free = lb if inst.k is None else free_bound(inst)
    reqs = list(inst.requests)
    by_id = {r.id: r for r in reqs}
    base = {"family": inst.family, "instance": inst.name, "n_workers": inst.n_workers,
            "n_models": inst.n_models, "k": _k_label(inst.k), "memory_gib": inst.memory_gib,
            "skew": inst.skew, "mix": inst.mix, "n_requests": len(reqs), "lb_s": lb.lb_s,
            "lb_k_s": lb.lb_s, "lb_no_k_s": lb_free.lb_s, "lb_work_s": lb.work_s, "lb_single_s": lb.single_s,
            "lb_replica_s": lb.replica_s, "lb_steps_s": lb.steps_s, "lb_packing_s": lb.packing_s,
            "lb_pigeonhole_s": lb.pigeonhole_s, "lb_binding": lb.binding,
            "clair_s": clairvoyant_s(inst)}
    rows = []
    for pol in policies:
        row = dict(base, policy=pol, status="ok", sim_s=None, sim_over_lb=None, predicted_s=None,
                   pred_low_s=None, pred_high_s=None, pred_chance=None, sim_quantile=None,
                   pred_err=None, solve_s=None, solve2_s=None, plan_hash="", hash_stable=None,
                   respects_k=None, solver="", error="")
        try:
            cfg = scheduler_config(pol, inst.k)
            plans, times = [], []
            for _ in range(2):
                t0 = time.perf_counter()
                problem, plan = plan_stage("expert", reqs, inst.workload.expert_models, cfg, "scheduled",
                                           inst.cluster, inst.profiles, inst.workload)
                times.append(time.perf_counter() - t0)
                plans.append(plan)
            trace = SimBackend(inst.cluster, inst.profiles).run(plans[0], by_id, inst.workload.outcomes)
        except ConfigError as e:
            row.update(status="n/a", error=str(e).splitlines()[0])
            rows.append(row)
            continue
        except Exception as e:  # noqa: BLE001 -- a broken policy is reported, the benchmark goes on
            row.update(status="error", error=f"{type(e).__name__}: {e}".splitlines()[0])
            traceback.print_exc()
            rows.append(row)
            continue
        sim, pred = trace.makespan_s, plans[0].predicted_makespan_s
        draws = prediction_draws(problem, plans[0])
        low, high = (None, None) if draws is None else prediction_band(draws)
        h1, h2 = plan_hash(plans[0]), plan_hash(plans[1])
        ok_k = respects_k(plans[0], inst.k)
        bound = lb.lb_s if ok_k else lb_free.lb_s   # a plan that ignores K is held to the K-free bound
        row.update(sim_s=sim, lb_s=bound, sim_over_lb=sim / bound, predicted_s=pred, pred_err=pred / sim - 1.0,
                   pred_low_s=low, pred_high_s=high,
                   pred_chance=None if draws is None else chance_within(draws, pred),
                   sim_quantile=None if draws is None else sim_quantile(draws, sim),
                   respects_k=ok_k,
                   solve_s=times[0], solve2_s=times[1], plan_hash=h1, hash_stable=h1 == h2,
                   solver=_solver_note(plans[0]))
        rows.append(row)
    return rows


def clairvoyant_s(inst: Instance) -> float | None:
    """Simulated makespan of the clairvoyant reference plan (benchmarks/scheduler/clairvoyant.py: made
    with the true output lengths, within K and memory); None where it found no packing."""
    plan = clairvoyant_plan(model_batches(inst), inst.profiles, inst.cluster, inst.k)
    if plan is None:
        return None
    trace = SimBackend(inst.cluster, inst.profiles).run(plan, {r.id: r for r in inst.requests},
                                                         inst.workload.outcomes)
    return trace.makespan_s


def _bounds(inst: Instance, cached: dict[str, ModelBound] | None = None) -> tuple[LowerBound, LowerBound]:
    """The instance's bound with its K and without (for plans that ignore K), from its models'
    single sessions (`cached`: those of an instance with the same workload)."""
    mb0 = cached if cached is not None else model_bounds(inst)
    # max_workers depends on N and K: recompute it on the (perhaps cached) sessions.
    mb = {m: replace(b, max_workers=max_workers(inst, m, len(mb0))) for m, b in mb0.items()}
    lb = lower_bound(inst, mb)
    return lb, (lb if inst.k is None else free_bound(inst, mb))


def free_bound(inst: Instance, models: dict[str, ModelBound] | None = None) -> LowerBound:
    """The instance's bound without K, which only plans that break K are held to; its packing term
    (minutes on the large instances) is left out, which can only lower it."""
    free = replace(inst, k=None)
    if models is not None:
        models = {m: replace(b, max_workers=max_workers(free, m, len(models))) for m, b in models.items()}
    return lower_bound(free, models, packing_nodes=0)


_POOL_JOB: tuple[Sequence[Instance], list[str]] | None = None   # set before the pool forks its workers


def _bench_one(i: int) -> tuple[int, list[dict], float]:
    insts, policies = _POOL_JOB
    t0 = time.perf_counter()
    lb, lb_free = _bounds(insts[i])
    return i, bench_instance(insts[i], policies, lb, lb_free), time.perf_counter() - t0


def bench(insts: Sequence[Instance], policies: Sequence[str] | None = None,
          progress: Callable[[str], None] | None = None, jobs: int = 1) -> pd.DataFrame:
    """Per instance x policy: simulated expert-stage makespan (sim_s), the lower bound (lb_s and its
    terms), sim/LB, the policy's predicted makespan and its error (predicted / sim - 1), the
    wall-clock of two plan_stage calls (solve_s, solve2_s) and the hash of the first plan, with
    whether the second call's plan hashed the same. A policy that raises a ConfigError on an
    instance (K infeasible, a model that fits nowhere) gets status "n/a" and the message.
    jobs > 1: instances in that many forked processes, largest first; every row is the same as
    with one (each is a pure function of its instance), only the solve times share the machine."""
    policies = list(policies) if policies is not None else default_policies()
    done: dict[int, list[dict]] = {}

    def report(i: int, got: list[dict], wall: float) -> None:
        done[i] = got
        if progress:
            inst, lb, binding = insts[i], got[0]["lb_k_s"], got[0]["lb_binding"]
            ok = [r for r in got if r["status"] == "ok"]
            best = min(ok, key=lambda r: r["sim_over_lb"]) if ok else None
            progress(f"[{len(done)}/{len(insts)}] {inst.family:9s} {inst.name:44s} N={inst.n_workers:<3d} "
                     f"M={inst.n_models:<3d} K={_k_label(inst.k):4s} req={len(inst.requests):<6d} "
                     f"LB {lb:8.0f} s ({binding})  "
                     + (f"best {best['policy']} {best['sim_over_lb']:.3f}x  " if best else "")
                     + f"max solve {max((r['solve_s'] for r in ok), default=0):.1f} s  [{wall:.1f} s]")

    if jobs > 1 and len(insts) > 1:
        global _POOL_JOB
        import multiprocessing

        order = sorted(range(len(insts)), key=lambda i: -insts[i].n_workers * len(insts[i].requests))
        _POOL_JOB = (insts, policies)
        try:
            with multiprocessing.get_context("fork").Pool(min(jobs, len(insts))) as pool:
                for i, got, wall in pool.imap_unordered(_bench_one, order):
                    report(i, got, wall)
        finally:
            _POOL_JOB = None
    else:
        cache: dict[tuple, dict[str, ModelBound]] = {}
        for i, inst in enumerate(insts):
            t0 = time.perf_counter()
            # The presets' workload is the same at every N: simulate its sessions once.
            key = (inst.family, inst.workload.name, inst.workload.seed, len(inst.requests), inst.memory_gib,
                   inst.n_workers if inst.family == "generated" else None)
            if key not in cache:
                cache[key] = model_bounds(inst)
            lb, lb_free = _bounds(inst, cache[key])
            report(i, bench_instance(inst, policies, lb, lb_free), time.perf_counter() - t0)
    return pd.DataFrame([r for i in range(len(insts)) for r in done[i]])


# ----------------------------------------------------------------------------- tables

CSV_COLUMNS = ("family", "n_workers", "instance", "policy", "n_models", "k", "memory_gib", "skew", "mix",
               "n_requests", "status", "sim_s", "lb_s", "sim_over_lb", "predicted_s", "pred_err", "pred_low_s", "pred_high_s",
               "pred_chance", "sim_quantile", "plan_hash", "hash_stable", "respects_k", "solver", "lb_k_s", "lb_no_k_s", "lb_work_s", "lb_single_s",
               "lb_replica_s", "lb_steps_s", "lb_packing_s",
               "lb_pigeonhole_s", "lb_binding", "clair_s", "error")


def _without_floor(df: pd.DataFrame) -> list[str]:
    """Per policy, sim/LB against the bound without its later terms (plans that honour K): as it
    was before the step floor, and before the packing term, so they can be read side by side."""
    ok = df[(df["status"] == "ok") & df["respects_k"].astype(bool)]
    if not len(ok) or "lb_steps_s" not in ok:
        return []
    base = ["lb_work_s", "lb_single_s", "lb_replica_s", "lb_pigeonhole_s"]
    views = [("the steps and packing terms", base)]
    if "lb_packing_s" in ok:
        views.append(("the packing term", base + ["lb_steps_s"]))
    out = []
    for label, cols in views:
        ratio = ok["sim_s"].astype(float) / ok[cols].astype(float).max(axis=1)
        parts = [f"{pol} {ratio[ok['policy'] == pol].median():.3f} / {ratio[ok['policy'] == pol].max():.3f}"
                 for pol in dict.fromkeys(ok["policy"])]
        out += [f"Against the bound without {label} (plans that honour K; median / worst sim/LB): "
                + ", ".join(parts) + ".", ""]
    return out


def _reference(df: pd.DataFrame) -> list[str]:
    """The optimum's bracket per family: the clairvoyant reference plan over the bound, and the
    best known plan (that one or any policy's that honours K) over it, median / worst by N."""
    if "clair_s" not in df:
        return []
    out = ["Between the bound and the optimum (`clair_s`: the clairvoyant reference plan, made with every "
           "output length known, benchmarks/scheduler/clairvoyant.py; best known: the fastest of it and every "
           "plan that honours K; no plan can beat the optimum, so best known / LB is how loose the bound "
           "can be at most). Median / worst over the instances:", ""]
    for fam in dict.fromkeys(df["family"]):
        f = df[df["family"] == fam]
        fair = f[(f["status"] == "ok") & f["respects_k"].astype(str).eq("True")]
        inst = f.drop_duplicates("instance").set_index("instance")
        lb = inst["lb_k_s"].astype(float)
        clair_s = pd.to_numeric(inst["clair_s"], errors="coerce")
        policies_s = fair.groupby("instance")["sim_s"].min().reindex(inst.index).astype(float)
        clair = clair_s / lb
        best = pd.concat([policies_s, clair_s], axis=1).min(axis=1) / lb
        parts = [f"N={n} {clair[inst.n_workers == n].median():.3f} / {clair[inst.n_workers == n].max():.3f}, "
                 f"best {best[inst.n_workers == n].median():.3f} / {best[inst.n_workers == n].max():.3f}"
                 for n in sorted(inst["n_workers"].unique())]
        out.append(f"- {fam}: clairvoyant {clair.median():.3f} / {clair.max():.3f}, best known {best.median():.3f} / "
                   f"{best.max():.3f} ({'; '.join(parts)}); the clairvoyant plan faster than every policy's on "
                   f"{int((clair_s < policies_s).sum())} of {len(inst)}")
    return out + [""]


def to_csv_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The deterministic part of the results (no solve times), sorted, floats rounded."""
    out = df.loc[:, [c for c in CSV_COLUMNS if c in df.columns]].copy()
    for c in out.columns:
        if out[c].dtype.kind == "f" or c.endswith("_s") or c in ("sim_over_lb", "pred_err", "pred_chance",
                                                                 "sim_quantile"):
            out[c] = pd.to_numeric(out[c]).round(CSV_DIGITS)
    return out.sort_values(["family", "n_workers", "instance", "policy"], kind="stable").reset_index(drop=True)


def _summary(g: pd.DataFrame) -> dict:
    ok = g[g["status"] == "ok"]
    err = ok["pred_err"].astype(float).abs()
    ratio = ok["sim_over_lb"].astype(float)
    solve = ok["solve_s"].astype(float)
    return {"n": len(g), "ok": len(ok),
            "med": ratio.median() if len(ok) else math.nan, "worst": ratio.max() if len(ok) else math.nan,
            "err": err.median() if len(ok) else math.nan,
            "within": (err <= TOLERANCE).mean() if len(ok) else math.nan,
            "expected": _mean_of(ok, "pred_chance"),
            "in_band": _in_band(ok),
            "solve_med": solve.median() if len(ok) else math.nan,
            "solve_max": solve.max() if len(ok) else math.nan,
            "stable": ok["hash_stable"].astype(bool).mean() if len(ok) else math.nan,
            "breaks_k": int((~ok["respects_k"].astype(bool)).sum()),
            "beaten": int(ok["beaten"].astype(bool).sum()) if "beaten" in ok else 0,
            "na": int((g["status"] != "ok").sum())}


def beaten(df: pd.DataFrame) -> pd.Series:
    """Per row: whether another policy that honours K simulated the same instance faster (the
    issue's "never worse than a baseline"; sim_s compared as scheduler_bench.csv stores it, so the
    count can be read off the CSV, as explain_scheduler_losses does)."""
    ok = df["status"] == "ok"
    sim = pd.to_numeric(df["sim_s"], errors="coerce").round(CSV_DIGITS)
    fair = ok & df["respects_k"].astype(str).eq("True")
    out = pd.Series(False, index=df.index)
    for _, idx in df.groupby("instance", sort=False).groups.items():
        for i in idx:
            out[i] = bool(ok[i]) and any(fair[j] and j != i and sim[j] < sim[i] for j in idx)
    return out


def _mean_of(ok: pd.DataFrame, col: str) -> float:
    """The mean of a column over the rows that have it (NaN: none has it)."""
    if col not in ok:
        return math.nan
    vals = pd.to_numeric(ok[col]).dropna()
    return float(vals.mean()) if len(vals) else math.nan


def _in_band(ok: pd.DataFrame) -> float:
    """Share of the rows with a prediction band whose simulated makespan lies inside it (NaN: none
    has one)."""
    if "pred_low_s" not in ok:
        return math.nan
    banded = ok[ok["pred_low_s"].notna()]
    if not len(banded):
        return math.nan
    sim = banded["sim_s"].astype(float)
    return float(((banded["pred_low_s"].astype(float) <= sim) & (sim <= banded["pred_high_s"].astype(float))).mean())


def _calibration(df: pd.DataFrame) -> list[str]:
    """Per policy with a predicted distribution: where the simulated makespans fall in it, by decile
    (about a tenth in each when the distribution is calibrated)."""
    if "sim_quantile" not in df:
        return []
    ok = df[(df["status"] == "ok") & pd.to_numeric(df["sim_quantile"]).notna()]
    lines = []
    for pol in dict.fromkeys(ok["policy"]):
        q = pd.to_numeric(ok.loc[ok["policy"] == pol, "sim_quantile"]).to_numpy()
        counts = np.histogram(np.clip(q, 0.0, 1.0), bins=10, range=(0.0, 1.0))[0]
        lines.append(f"{pol}: {' '.join(str(c) for c in counts)} (of {len(q)})")
    if not lines:
        return []
    return ["Where the simulated makespan falls in its prediction's distribution, instances per decile "
            "(lowest first; about a tenth each when calibrated): " + "; ".join(lines) + ".", ""]


def _fmt(x: float, spec: str) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


HEADER = ("| {first} | policy | inst. | median sim/LB | worst sim/LB | median abs pred. err | within ±10% | "
          "expected within ±10% | sim in pred. band | median solve (s) | max solve (s) | hash-stable | breaks K | "
          "slower than another | n/a |")


def _pct(x: float, digits: int) -> str:
    return "-" if math.isnan(x) else f"{x * 100:.{digits}f}%"


def _line(first: str, pol: str, s: dict) -> str:
    return (f"| {first} | {pol} | {s['ok']}/{s['n']} | {_fmt(s['med'], '.3f')} | {_fmt(s['worst'], '.3f')} | "
            f"{_pct(s['err'], 1)} | {_pct(s['within'], 0)} | {_pct(s['expected'], 0)} | {_pct(s['in_band'], 0)} | {_fmt(s['solve_med'], '.3f')} | "
            f"{_fmt(s['solve_max'], '.2f')} | {_pct(s['stable'], 0)} | {s['breaks_k']} | {s['beaten']} | {s['na']} |")


def render(df: pd.DataFrame, command: str = "python -m benchmarks.scheduler",
           machine: str = "2 CPU cores, shared with other jobs", wall_s: float | None = None) -> str:
    """Markdown: per family and N, per policy, the median and worst simulated makespan over the
    lower bound, the median |prediction error| and the share within ±10%, median and max solve time,
    the share of instances whose plan hashed the same in two runs, and on how many another policy
    that honours K simulates faster; then per family and across all instances, one line per policy."""
    policies = list(dict.fromkeys(df["policy"]))
    df = df.assign(beaten=beaten(df))
    out = ["# Scheduler benchmark: expert stage, simulated makespan over a lower bound", "",
           f"Regenerate with `{command}`" + (f" (wall time {wall_s / 60:.1f} min" if wall_s is not None else " (")
           + f" on {machine}). Logic: benchmarks/scheduler/bench.py; per-row data: scheduler_bench.csv "
           "(everything but solve times, which are wall-clock on a loaded machine and vary between runs).", "",
           ("- sim/LB: simulated expert-stage makespan (mosaic.backends.sim.backend) over a lower bound that no plan of the "
           "instance can beat, within K and memory: the least makespan C for which some replication count "
           "r_m (1 <= r_m <= min(N, fitting workers, K N - (M - 1)), sum r_m <= K N) satisfies C >= l_m + S_m / r_m "
           "and C >= l_m + (longest request alone) for every model, and N C >= sum_m (r_m l_m + S_m); "
           "or, when M > N, the ceil(M/N) cheapest models on one worker. S_m: all of model m's requests "
           "simulated as one session on an idle worker, with their true lengths "
           "(benchmarks/scheduler/bench.py `lower_bound` derives it). The `steps` term also prices each "
           "replica by the step floor (mosaic/engine/floor.py): every session pays a step's fixed cost "
           "for each token of its longest output, so a split cannot keep one session's batching. The `packing` "
           "term also packs those replicas, whole, onto the N workers, K models each "
           "(benchmarks/scheduler/packing_bound.py: the largest C at which HiGHS, or a count of the K N model slots "
           "where a model too big to share a worker runs alone, or, where M = K N, a check that the models' "
           "whole sessions cannot be grouped K to a worker, proves that no packing exists)."),
           ("- prediction error: the policy's predicted makespan (plan.predicted_makespan_s, from calibration "
           "statistics only) / simulated - 1; `within ±10%`: share of instances with |error| <= 10%. "
           "`sim in pred. band`: share of instances whose simulated makespan lies between the 10% and 90% "
           "quantiles of the makespans the prediction averages over (its scenarios of which requests each "
           "replica draws; a calibrated band holds about 80%); - for a point prediction. "
           "`expected within ±10%`: the mean over instances of the chance that the prediction lies within "
           "±10% of a makespan drawn from its own distribution, the share a calibrated predictor is "
           "expected to reach (the observed share is one draw around it); with the run's output lengths "
           "unknown, no point prediction does much better, since the makespan itself varies that much."),
           ("- solve: wall-clock of plan_stage (cost prediction + policy); hash-stable: share of instances whose "
           "plan (worker -> sessions -> request ids, sha256) was identical in two plan_stage calls."),
           ("- inst.: instances the policy planned / instances; n/a: a ConfigError (e.g. K infeasible) or an "
            "error. breaks K: plans that load more than K models on a worker (the policy has no K setting); "
            "those are measured against the same bound computed without K. slower than another: instances "
            "where another policy that honours K simulates faster (`python -m benchmarks.scheduler.losses` "
            "prices engine_aware's against its own cost model and draws the run again)."),
           ("- clairvoyant reference (`clair_s`, the line below the tables): a plan made with every request's "
            "true output length, which no policy has (benchmarks/scheduler/clairvoyant.py), within K and memory, "
            "simulated like the others. No plan beats the optimum, so the optimum lies between the bound and "
            "the fastest known plan; where that plan too sits far above the bound, the bound is loose there."),
           ""]
    labels = {"generated": "generated (clones of paper_a100's experts; N, M, skew, mix, K, memory sampled)",
              "presets": "presets (synth_mmlu_pro, synth_medmcqa, synth_gpqa as the CLI builds them; K = 2)",
              "paper": "paper (real question sets mmlu_pro, medmcqa, gpqa; N = 4, K = 2)"}
    for fam in dict.fromkeys(df["family"]):
        f = df[df["family"] == fam]
        out += [f"## {labels.get(fam, fam)}", "", HEADER.format(first="N"), "|---" * 15 + "|"]
        for nw in sorted(f["n_workers"].unique()):
            for pol in policies:
                g = f[(f["n_workers"] == nw) & (f["policy"] == pol)]
                if len(g):
                    out.append(_line(str(nw), pol, _summary(g)))
        for pol in policies:
            g = f[f["policy"] == pol]
            if len(g):
                out.append(_line("all", pol, _summary(g)))
        out.append("")
    out += ["## All instances", "", HEADER.format(first="family"), "|---" * 15 + "|"]
    for pol in policies:
        out.append(_line("all", pol, _summary(df[df["policy"] == pol])))
    binding = Counter(df.drop_duplicates("instance")["lb_binding"])
    out += ["", "Binding lower-bound term (instances): "
            + ", ".join(f"{t} {c}" for t, c in sorted(binding.items())), ""]
    out += _without_floor(df)
    out += _reference(df)
    out += _calibration(df)
    bad = df[df["status"] != "ok"]
    if len(bad):
        out += ["Not planned:", ""]
        for _, r in bad.drop_duplicates(["instance", "policy"]).iterrows():
            out.append(f"- {r['instance']} / {r['policy']}: {r['status']}: {r['error']}")
        out.append("")
    below = df[(df["status"] == "ok") & (df["sim_over_lb"].astype(float) < 1.0 - 1e-9)]
    out.append(f"Plans simulated below the lower bound: {len(below)}" +
               ("" if not len(below) else " (the bound's assumption P1 failed there: " +
                ", ".join(f"{r['instance']}/{r['policy']}" for _, r in below.iterrows()) + ")"))
    return "\n".join(out) + "\n"


def write(out: Path, families: Sequence[str] = FAMILIES, policies: Sequence[str] | None = None,
          seed: int = 0, quick: bool = False, progress: Callable[[str], None] | None = print,
          command: str = "python -m benchmarks.scheduler", jobs: int = 1) -> str:
    """Build the instances, run `bench`, write scheduler_bench.csv and scheduler_bench.md under
    `out`; returns the markdown."""
    t0 = time.perf_counter()
    insts = instances(families, seed, quick, progress)
    df = bench(insts, policies, progress, jobs)
    wall = time.perf_counter() - t0
    out.mkdir(parents=True, exist_ok=True)
    to_csv_frame(df).to_csv(out / "scheduler_bench.csv", index=False, lineterminator="\n")
    md = render(df, command, wall_s=wall, **({"machine": f"{os.cpu_count()} CPU cores, {jobs} instances at a time"}
                                            if jobs > 1 else {}))
    (out / "scheduler_bench.md").write_text(md)
    return md
