"""Confidence-aware adaptive aggregation: skip the aggregator when the experts agree.

C(q) = max_a |{i : a_i = a}| / k. With policy `threshold`, a query whose C(q) >= tau returns the
majority answer; otherwise (and always under policy `always`) the aggregator runs. The policy and
tau are AggregationConfig's (mosaic/config/schema.py), validated there.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Mapping, Sequence

from mosaic.config.schema import AggregationConfig

# C(q) is a multiple of 1/k, so grid points are >= 0.1 apart for k <= 10: a 1e-3 tolerance lets
# tau = 2/3 written as 0.6667 or 0.666 accept a 2:1 vote without ever crossing a real grid point.
_EPS = 1e-3


@dataclass(frozen=True)
class Decision:
    query_id: str
    agreement: float
    majority: str | None      # None when the top answer is tied or nobody answered
    skip: bool


def agreement(answers: Sequence[str | None], k: int | None = None) -> tuple[float, str | None]:
    """Agreement C(q) and the majority answer. Unparsed answers (None) count as votes for nothing;
    a tie for the top answer has no majority, so it can never be skipped."""
    k = k or len(answers)
    votes = Counter(a for a in answers if a is not None)
    if not votes or k == 0:
        return 0.0, None
    (top, count), *rest = votes.most_common()
    tied = bool(rest) and rest[0][1] == count
    return count / k, (None if tied else top)


def decide(policy: AggregationConfig, answers: Mapping[str, Sequence[str | None]]) -> list[Decision]:
    out = []
    for qid, ans in answers.items():
        c, majority = agreement(ans)
        skip = (policy.policy == "threshold" and majority is not None and c >= policy.tau - _EPS)
        out.append(Decision(qid, c, majority, skip))
    return out
