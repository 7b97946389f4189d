"""When a cluster of agents stops early (topology.early_exit), checked each time one of its agents
finishes, over the outputs finished so far (two at least):

- qmetric (Faster-MoA, Algorithm 1): C = root mean square of the outputs' confidences; P = their
  confidence-weighted pairwise similarity; B = 1 - |P - tau| / tau; Q = sqrt(C * B). With
  probability Q the rest of the cluster is cancelled. Similarity here is agreement of the extracted
  answers (1 or 0), where Faster-MoA compares the texts with an embedding model: the simulator has
  answers, not texts (a stated departure).
- agreement: the rest is cancelled when every finished answer is the same.
An output with no readable answer (natural generation) is similar to none.

The draw is the cluster's own seeded generator's next number: the same seed gives the same exits.
"""
from __future__ import annotations

import math
from itertools import combinations

import numpy as np

from mosaic.graphs.outcomes import AgentOutcome


def q_metric(outs: list[AgentOutcome], tau: float) -> float:
    c = math.sqrt(sum(o.confidence ** 2 for o in outs) / len(outs))
    pairs = list(combinations(outs, 2))
    weights = [a.confidence * b.confidence for a, b in pairs]
    p = (sum(w * (a.answer is not None and a.answer == b.answer) for w, (a, b) in zip(weights, pairs)) / sum(weights)
         if sum(weights) else 0.0)
    b = max(0.0, 1.0 - abs(p - tau) / tau)
    return math.sqrt(c * b)


def should_exit(rule: str, outs: list[AgentOutcome], rng: np.random.Generator, tau: float = 0.7) -> bool:
    if rule == "none" or len(outs) < 2:
        return False
    if rule == "agreement":   # an output with no readable answer agrees with nothing
        return len({o.answer for o in outs}) == 1 and outs[0].answer is not None
    return bool(rng.random() < q_metric(outs, tau))
