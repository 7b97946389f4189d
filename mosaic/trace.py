"""Trace: what a backend observed when running a Plan. Metrics and figures read only Traces."""
from __future__ import annotations

from dataclasses import dataclass, fields

from mosaic.core.tables import csv_text
from mosaic.core import serde


@dataclass(frozen=True)
class RequestRecord:
    request_id: str
    query_id: str
    model: str
    stage: str
    worker: int
    session: int          # index of the session on its worker
    start_s: float        # prefill began
    first_token_s: float
    finish_s: float
    prompt_tokens: int
    output_tokens: int
    answer: str | None
    error: str | None = None
    text: str | None = None   # generated text, kept only when the model generated naturally
    # When the request was bound to its replica (worker, session): the session's start under the
    # static runtime, when the replica took it (runtime=pull) or when it was released (a router).
    bound_s: float | None = None


@dataclass(frozen=True)
class SessionRecord:
    worker: int
    index: int
    model: str
    load_start_s: float
    load_end_s: float
    run_start_s: float
    run_end_s: float
    n_requests: int
    preemptions: int | None = 0   # None: the engine did not report them (vLLM with disable_log_stats)
    error: str | None = None
    # GPUs the session's one engine spanned (tensor parallelism). Each of them has this record; the
    # requests point at the lead rank's (the session's first worker).
    tp_size: int = 1
    # How the engine actually ran its TP ranks ("" = single GPU); a backend that had to run a
    # TP session differently from the plan says so here.
    tp_mode: str = ""
    # A replica the runtime loaded mid-run (runtime=pull, a worker done with its plan), not in the plan.
    added: bool = False


@dataclass(frozen=True)
class WorkerStats:
    worker: int
    busy_s: float
    idle_s: float


@dataclass(frozen=True)
class Trace:
    stage: str
    backend: str
    makespan_s: float
    requests: tuple[RequestRecord, ...]
    sessions: tuple[SessionRecord, ...]
    workers: tuple[WorkerStats, ...]

    def to_json(self, **kw) -> str:
        return serde.to_json(self, **kw)

    @classmethod
    def from_json(cls, text: str) -> "Trace":
        return serde.from_json(cls, text)


def assemble_trace(stage: str, backend: str, requests: list[RequestRecord], sessions: list[SessionRecord],
                   worker_ids: list[int]) -> Trace:
    """The Trace every backend returns: records in a canonical order, makespan = last session end."""
    makespan = max((s.run_end_s for s in sessions), default=0.0)
    reqs = tuple(sorted(requests, key=lambda r: (r.worker, r.session, r.start_s, r.request_id)))
    sess = tuple(sorted(sessions, key=lambda s: (s.worker, s.index)))
    return Trace(stage, backend, makespan, reqs, sess, worker_stats(sess, worker_ids, makespan))


def worker_stats(sessions: tuple[SessionRecord, ...], worker_ids: list[int],
                 makespan_s: float) -> tuple[WorkerStats, ...]:
    """Busy time is the union of a worker's session spans; sessions on one worker never overlap."""
    busy = {w: 0.0 for w in worker_ids}
    for s in sessions:
        busy[s.worker] += s.run_end_s - s.load_start_s
    return tuple(WorkerStats(w, busy[w], makespan_s - busy[w]) for w in worker_ids)


def _csv(cls, rows_by_stage: list[tuple[str, tuple]], stage_column: bool) -> str:
    names = [f.name for f in fields(cls)]
    columns = (["stage"] if stage_column else []) + names
    return csv_text(({"stage": stage, **{n: getattr(r, n) for n in names}} for stage, rows in rows_by_stage
                     for r in rows), columns)


def requests_csv(traces: list[Trace]) -> str:
    # RequestRecord carries its own stage field.
    return _csv(RequestRecord, [(t.stage, t.requests) for t in traces], stage_column=False)


def sessions_csv(traces: list[Trace]) -> str:
    """Sessions with a stage column; times are relative to the start of their stage."""
    return _csv(SessionRecord, [(t.stage, t.sessions) for t in traces], stage_column=True)
