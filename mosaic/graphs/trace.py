"""What running agent graphs observed: a record per agent request (served or cancelled) and per
query, as plain frozen dataclasses, the same from either backend. Times in seconds from the start
of the run (0 = workers start; engines load first, then queries start)."""
from __future__ import annotations

from dataclasses import dataclass

from mosaic.trace import SessionRecord, WorkerStats

SERVED, CANCELLED, FAILED = "served", "cancelled", "failed"
GRAPH_STAGE = "graph"   # the stage column of sessions.csv for a graph run (one stage, absolute times)
# Prefill-only requests (topology.overlap) are "<request id>#<n>": engine work, not agent requests.
PREFILL_MARK = "#"


def is_prefill(request_id: str) -> bool:
    return PREFILL_MARK in request_id


@dataclass(frozen=True)
class Finished:
    """What an engine pool reports when a request leaves an engine: served to its last token, or
    cancelled (its times so far). A failed engine is reported by worker, not by request
    (EnginePool.run's on_failed)."""
    rid: str
    start_s: float | None
    first_token_s: float | None
    finish_s: float
    output_tokens: int
    cancelled: bool
    cached_tokens: int = 0     # prompt tokens the engine found in its prefix cache
    # Natural generation (the engine answers for itself): its text, the answer extracted from it,
    # its confidence (geometric mean of its tokens' probabilities) and its prompt's length.
    text: str | None = None
    answer: str | None = None
    confidence: float | None = None
    prompt_tokens: int | None = None


@dataclass(frozen=True)
class AgentRecord:
    request_id: str            # "<query>/<agent>"
    query_id: str
    agent: str                 # "L1.0", ..., "agg"
    layer: int
    model: str
    worker: int | None         # None: cancelled before it was released to an engine
    release_s: float | None    # its precursors were all done (or cancelled): handed to the engine
    start_s: float | None      # its first prefill step began
    first_token_s: float | None
    finish_s: float | None     # served: its last token; cancelled: when it was cancelled
    prompt_tokens: int | None  # its prefix plus the outputs it read
    output_tokens: int         # tokens generated (a cancelled request: before it was cancelled)
    answer: str | None
    confidence: float | None
    status: str                # served | cancelled | failed
    cancelled_by: str = ""     # the early-exit rule that cancelled it
    cached_tokens: int = 0     # of its prompt, found in the engine's prefix cache (overlap)
    error: str | None = None   # failed: why (every replica of its model's engine failed)


@dataclass(frozen=True)
class QueryRecord:
    query_id: str
    start_s: float
    finish_s: float            # its aggregator's last token
    latency_s: float
    answer: str | None
    gold: str
    correct: bool
    served: int                # agent requests served (the aggregator included)
    cancelled: int
    failed: int = 0            # agent requests failed (their model's engines failed); a failed
                               # aggregator leaves the query without an answer
    rejected: bool = False     # online: refused at arrival (arrivals.max_in_system), none of it sent


@dataclass(frozen=True)
class GraphTrace:
    backend: str
    makespan_s: float
    ready_s: float             # every engine was loaded: the first queries started
    requests: tuple[AgentRecord, ...]
    queries: tuple[QueryRecord, ...]
    sessions: tuple[SessionRecord, ...]
    workers: tuple[WorkerStats, ...]
    truncated_prompts: int = 0  # prompts cut to the context window (their inputs' tail dropped)
    prefill_requests: int = 0   # prefill-only requests sent ahead of successors (overlap)
    # modelled output lengths cut to the context left after their prompt (None: natural generation,
    # where the engine stops the output at the context or backend.options.max_tokens itself)
    capped_outputs: int | None = 0
    # Online re-planning (runtime.replan): the replicas moved from one model to another mid-run
    # (mosaic/graphs/coordinator.py Move).
    moves: tuple = ()


def busy_stats(sessions: tuple[SessionRecord, ...], requests: tuple[AgentRecord, ...], worker_ids: list[int],
               makespan_s: float) -> tuple[WorkerStats, ...]:
    """Per worker, busy while its engine loads (load start to run start) or holds a request (from
    its release to its finish), the union of those spans; idle the rest of the makespan. An agent
    graph's engines stay loaded for the whole run, so their sessions' spans would make every worker
    busy for all of it."""
    spans: dict[int, list[tuple[float, float]]] = {w: [] for w in worker_ids}
    for s in sessions:
        spans.setdefault(s.worker, []).append((s.load_start_s, s.run_start_s))
    for r in requests:
        if r.worker is not None and r.release_s is not None and r.finish_s is not None:
            spans.setdefault(r.worker, []).append((r.release_s, r.finish_s))
    out = []
    for w in worker_ids:
        busy, end = 0.0, float("-inf")
        for a, b in sorted(spans[w]):
            if b <= end:
                continue
            busy += b - max(a, end)
            end = b
        out.append(WorkerStats(w, busy, makespan_s - busy))
    return tuple(out)
