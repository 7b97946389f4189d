"""Routing statistics: slots per expert, repeated slots, and our router next to the paper's Table 3.

A slot is one (query, expert sample) request of the expert stage. Table 3 of the paper counts
slots per expert at seed 0; `table3_rows` puts a workload's counts beside it, and
`router_vs_table3` builds the three real question workloads with our router to do so.
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Iterable

from mosaic.profiles import load_profiles
from mosaic.workload.build import build_workload
from mosaic.workload.routing.recruit import PAPER_TABLE3
from mosaic.workload.types import Workload, expert_slots


def slot_counts(workload: Workload) -> dict[str, int]:
    """Expert-stage requests per model, in the workload's expert order (0 for a model never chosen)."""
    c = Counter(m for q in workload.queries for m in q.experts)
    return {m: c.get(m, 0) for m in workload.expert_models}


def repeat_share(workload: Workload) -> float:
    """Share of slots that are a second or third sample of a model already recruited for the query."""
    slots = [s for q in workload.queries for _, s in expert_slots(q.experts)]
    return sum(s > 1 for s in slots) / len(slots) if slots else 0.0


def queries_with_repeats(workload: Workload) -> float:
    """Share of queries that recruited some expert more than once."""
    n = len(workload.queries)
    return sum(len(set(q.experts)) < len(q.experts) for q in workload.queries) / n if n else 0.0


def table3_rows(workload: Workload, dataset: str) -> list[dict[str, Any]]:
    """One row per expert: our slots next to Table 3's (paper_slots None where Table 3 lacks one)."""
    paper = PAPER_TABLE3.get(dataset, {})
    share = repeat_share(workload)
    return [{"dataset": dataset, "model": m, "slots": n, "paper_slots": paper.get(m),
             "repeat_share": round(share, 4)} for m, n in slot_counts(workload).items()]


def router_vs_table3(profiles: str = "paper_a100", seed: int = 0,
                     questions_dir: str = "../shared/data/questions",
                     datasets: Iterable[str] = tuple(PAPER_TABLE3), routing: str = "router") -> list[dict[str, Any]]:
    """Our router's slots per expert on the real question sets (kind `questions`) beside Table 3."""
    ps = load_profiles(profiles)
    rows: list[dict[str, Any]] = []
    for ds in datasets:
        cfg = {"kind": "questions", "dataset": ds, "name": ds, "questions_dir": questions_dir, "routing": routing}
        rows += table3_rows(build_workload(cfg, ps, seed), ds)
    return rows
