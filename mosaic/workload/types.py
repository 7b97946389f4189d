"""Workload data model.

A Request is what a scheduler may see: which model, how long the prompt is. What the request will
actually produce (its output length and answer) lives apart in `Outcome`, which only a backend
replaying the workload reads, so no policy can peek at the future.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

from mosaic.core import serde
from mosaic.workload.prompts import expert_prompt
from mosaic.workload.sources.data_quality import DataReport


def expert_request_id(query_id: str, model: str, sample: int = 1) -> str:
    """Id of the `sample`-th request (1-based) a query sends to `model`. Recruitment draws experts
    with replacement, so one query can ask the same model twice: "q/m", then "q/m#2", "q/m#3"."""
    if sample < 1:
        raise ValueError(f"sample is 1-based (got {sample})")
    return f"{query_id}/{model}" if sample == 1 else f"{query_id}/{model}#{sample}"


def expert_slots(experts: Sequence[str]) -> list[tuple[str, int]]:
    """(model, sample) per routed slot, in routing order: repeats of a model count up from 1."""
    seen: Counter[str] = Counter()
    out = []
    for m in experts:
        seen[m] += 1
        out.append((m, seen[m]))
    return out


def aggregator_request_id(query_id: str) -> str:
    return f"{query_id}/agg"


@dataclass(frozen=True)
class Query:
    id: str
    category: str
    prompt_tokens: int
    gold: str
    experts: tuple[str, ...]  # chosen by the router, in routing order; may repeat a model
    difficulty: float = 0.0   # latent; drives correlated errors and longer outputs
    text: str | None = None   # the question with its options, where the workload has it


@dataclass(frozen=True)
class Request:
    id: str
    query_id: str
    model: str
    prompt_tokens: int
    stage: str  # "expert" | "aggregator"
    prompt: str | None = None  # text for real engines; None = a synthetic prompt of prompt_tokens


@dataclass(frozen=True)
class Outcome:
    """What a request produces when run: output length in tokens and the extracted answer."""

    output_tokens: int
    answer: str | None


@dataclass(frozen=True)
class LengthStats:
    """A model's lengths on the calibration (train) split: all the cost model may know of them."""

    n: int                 # calibration answers measured
    mean_output: float     # mean output tokens
    max_output: int        # longest output
    mean_prompt: float     # mean prompt tokens
    source: str = ""       # where they were measured (train trace, simulated train answers, ...)
    # Per question category: (answers measured, their mean output tokens), where the calibration
    # split's questions have categories. A per-question length signal the scheduler may use.
    by_category: dict[str, tuple[int, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class Workload:
    name: str
    seed: int
    queries: tuple[Query, ...]
    expert_models: tuple[str, ...]
    aggregator: str
    # Replay data keyed by request id: expert requests, and the aggregator's answer per query if it ran.
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    options: tuple[str, ...] = ("A", "B", "C", "D")
    # Per model (experts and aggregator): output lengths on the calibration split of the same
    # dataset. The cost model reads these, never `outcomes` (mosaic/workload/calibration.py).
    calibration: dict[str, LengthStats] = field(default_factory=dict)
    # Trace workloads: what the loader found wrong in the input files (mosaic/workload/sources/data_quality.py).
    data_report: DataReport | None = None

    def expert_requests(self) -> tuple[Request, ...]:
        """One request per routed slot; a model recruited twice for a query gets two requests."""
        return tuple(Request(expert_request_id(q.id, m, s), q.id, m, q.prompt_tokens, "expert",
                             expert_prompt(q.text) if q.text else None)
                     for q in self.queries for m, s in expert_slots(q.experts))

    def to_json(self) -> str:
        return serde.to_json(self)

    @classmethod
    def from_json(cls, text: str) -> "Workload":
        return serde.from_json(cls, text)
