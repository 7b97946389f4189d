"""A plan as a count matrix X[m][w] (how many of model m's requests worker w serves), checked
against the ILP's constraints independently of any solver, and its predicted makespan."""
from __future__ import annotations

from mosaic.plan import Plan, SolverInfo
from mosaic.costs.problem import StageProblem
from mosaic.schedulers.common import make_plan, split_counts

Counts = dict[str, dict[int, int]]   # model -> worker -> requests; workers absent or 0: not loaded


def worker_loads(problem: StageProblem, counts: Counts) -> list[float]:
    """Per worker: l_m (+ fixed) for every model it loads plus tau_m per request, as make_plan predicts."""
    loads = [0.0] * problem.n_workers
    for d in problem.models:
        for w, x in counts.get(d.model, {}).items():
            if x > 0:
                loads[w] += d.overhead_s + d.per_request_s * x
    return loads


def makespan(problem: StageProblem, counts: Counts) -> float:
    return float(max(worker_loads(problem, counts), default=0.0))


def violations(problem: StageProblem, counts: Counts, caps: dict[str, int], k: int) -> list[str]:
    """Every ILP constraint the counts break (coverage, integrality, memory fit, 1 <= replicas <=
    R_m, <= K models per worker); linking holds by construction (a worker loads m iff X > 0)."""
    out = []
    per_worker = [0] * problem.n_workers
    for d in problem.models:
        row = counts.get(d.model, {})
        if any(not isinstance(x, int) or x < 0 for x in row.values()):
            out.append(f"{d.model}: counts must be non-negative integers, got {row}")
            continue
        if sum(row.values()) != d.n:
            out.append(f"{d.model}: {sum(row.values())} requests placed, {d.n} routed")
        used = [w for w, x in row.items() if x > 0]
        if any(w not in problem.fits[d.model] for w in used):
            out.append(f"{d.model}: placed on workers {used}, fits only {sorted(problem.fits[d.model])}")
        if d.n and not 1 <= len(used) <= caps[d.model]:
            out.append(f"{d.model}: on {len(used)} workers, replication cap {caps[d.model]}")
        for w in used:
            if 0 <= w < problem.n_workers:
                per_worker[w] += 1
    out += [f"worker {w}: {c} models, K = {k}" for w, c in enumerate(per_worker) if c > k]
    return out


def counts_plan(problem: StageProblem, policy: str, counts: Counts, solver: SolverInfo | None,
                params: dict[str, float]) -> Plan:
    """Turn counts into sessions: each replica gets an interleaved share of the model's stream."""
    assignment: dict[int, list] = {}
    for d in problem.models:
        for w, ids in split_counts(d.request_ids, counts.get(d.model, {})).items():
            assignment.setdefault(w, []).append((d.model, ids))
    return make_plan(problem, policy, assignment, solver, params)
