"""The invariants every run's Trace keeps, whatever decided it (plan or runtime): every request
served exactly once, by a session of its model that ran on a worker the model fits; a request's
binding, start and finish inside its session; a worker's sessions one after the other; no worker
loading more than K models."""
from __future__ import annotations

from collections import Counter, defaultdict
from typing import Iterable, Mapping

from mosaic.trace import Trace
from mosaic.workload.types import Request

EPS = 1e-6


class TraceError(RuntimeError):
    """A trace breaks an invariant: a bug in whatever produced it, not a setting."""


def check_trace(trace: Trace, requests: Iterable[Request], fits: Mapping[str, Iterable[int]] | None = None,
                max_models_per_worker: int | None = None) -> Trace:
    reqs = {r.id: r for r in requests}
    seen = Counter(r.request_id for r in trace.requests)
    twice = [rid for rid, n in seen.items() if n > 1]
    if twice:
        raise TraceError(f"{trace.stage} stage: {len(twice)} requests served more than once, e.g. {twice[0]}")
    missing = [rid for rid in reqs if rid not in seen]
    if missing:
        raise TraceError(f"{trace.stage} stage: {len(missing)} requests never served, e.g. {missing[0]}")
    unknown = [rid for rid in seen if rid not in reqs]
    if unknown:
        raise TraceError(f"{trace.stage} stage: {len(unknown)} results for requests it was not given, e.g. {unknown[0]}")
    sessions = {(s.worker, s.index): s for s in trace.sessions}
    for r in trace.requests:
        s = sessions.get((r.worker, r.session))
        if s is None:
            raise TraceError(f"request {r.request_id}: served by session {r.session} of worker {r.worker}, "
                             "which the trace does not have")
        if s.model != r.model or reqs[r.request_id].model != r.model:
            raise TraceError(f"request {r.request_id} of {reqs[r.request_id].model} served by a {s.model} session")
        if r.error is None and not (s.run_start_s - EPS <= r.start_s <= r.finish_s <= s.run_end_s + EPS):
            raise TraceError(f"request {r.request_id}: ran {r.start_s:.3f}-{r.finish_s:.3f} s, outside its session "
                             f"({s.run_start_s:.3f}-{s.run_end_s:.3f} s)")
        if r.bound_s is not None and r.error is None and r.bound_s > r.start_s + EPS:
            raise TraceError(f"request {r.request_id}: started at {r.start_s:.3f} s, before it was bound ({r.bound_s:.3f} s)")
    by_worker = defaultdict(list)
    for s in trace.sessions:
        by_worker[s.worker].append(s)
        if fits is not None and s.tp_size == 1 and s.worker not in set(fits.get(s.model, ())):
            raise TraceError(f"worker {s.worker} ran {s.model}, which does not fit there")
    for w, ss in by_worker.items():
        ss.sort(key=lambda s: s.load_start_s)
        for a, b in zip(ss, ss[1:]):
            if b.load_start_s < a.run_end_s - EPS:
                raise TraceError(f"worker {w}: {b.model} loaded at {b.load_start_s:.3f} s while {a.model} ran "
                                 f"until {a.run_end_s:.3f} s")
        models = {s.model for s in ss}
        if max_models_per_worker is not None and len(models) > max_models_per_worker:
            raise TraceError(f"worker {w} loaded {len(models)} models ({', '.join(sorted(models))}), more than "
                             f"K={max_models_per_worker}")
    return trace
