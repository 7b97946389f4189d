"""Confidence-aware adaptive aggregation: skip the aggregator when the experts agree.

C(q) = max_a |{i : a_i = a}| / k. With policy `threshold`, a query whose C(q) >= tau returns the
majority answer; otherwise (and always under policy `always`) the aggregator runs.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Mapping, Sequence

from mosaic.core.errors import ConfigError

# C(q) is a multiple of 1/k, so grid points are >= 0.1 apart for k <= 10: a 1e-3 tolerance lets
# tau = 2/3 written as 0.6667 or 0.666 accept a 2:1 vote without ever crossing a real grid point.
_EPS = 1e-3


@dataclass(frozen=True)
class AggregationPolicy:
    name: str = "threshold"   # "always" | "threshold"
    tau: float | None = 1.0

    def __post_init__(self):
        if self.name not in ("always", "threshold"):
            raise ConfigError(f"aggregation.policy: unknown policy '{self.name}'; use 'always' or 'threshold'")
        # `always` never reads tau: accepting one would record a threshold the run did not apply.
        if self.name == "always" and self.tau is not None:
            raise ConfigError(f"aggregation.tau must be null with aggregation.policy=always (got {self.tau}); "
                              "set aggregation.tau=null, or use aggregation.policy=threshold to gate on tau")
        if self.name == "threshold" and (self.tau is None or not 0.0 < self.tau <= 1.0):
            raise ConfigError(f"aggregation.tau must be in (0, 1] for the threshold policy (got {self.tau})")


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


def decide(policy: AggregationPolicy, answers: Mapping[str, Sequence[str | None]]) -> list[Decision]:
    out = []
    for qid, ans in answers.items():
        c, majority = agreement(ans)
        skip = (policy.name == "threshold" and majority is not None and c >= policy.tau - _EPS)
        out.append(Decision(qid, c, majority, skip))
    return out
