"""What an agent of a graph produces in the simulator: its answer, its confidence and its length.

A query has a latent difficulty z ~ N(0, 1). An agent of model m is right with probability
expit(logit(a_m) - z + follow * (right - wrong inputs)), a_m the model's accuracy on the dataset
(the profile's table, else the dataset preset's), `follow` the workload's aggregator_follow (the logit an agent gains per
input answer that is right rather than wrong; 0 for layer 1, which reads only the question). A wrong
agent repeats the most common wrong answer among its inputs, or picks another option. Its length
is a draw from the model's output-length distribution on the dataset (the profile's), capped by
the context window left after its prompt.

Confidence (Faster-MoA's per-output geometric mean of token probabilities) has no profile yet: it
is modelled, an assumption stated here and in docs/agent_graphs.md, as Beta(8, 2) (mean 0.8) for a right
answer and Beta(5, 3) (mean 0.63) for a wrong one, so confidence is informative but noisy.

Every random number of an agent comes from its own generator, seeded by (run seed, query,
agent): an outcome does not depend on the order the simulator reaches it.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
from scipy.special import expit, logit

from mosaic.core.errors import ConfigError
from mosaic.graphs.shape import AgentSpec
from mosaic.profiles import ProfileSet
from mosaic.workload.types import Query

CONFIDENCE_RIGHT = (8.0, 2.0)   # Beta parameters (assumed; see the module docstring)
CONFIDENCE_WRONG = (5.0, 3.0)
_STREAM = 0x6A7                  # keeps these draws apart from the workload generator's


@dataclass(frozen=True)
class AgentOutcome:
    output_tokens: int
    answer: str | None         # None: no answer could be read from what it wrote (natural generation)
    confidence: float
    correct: bool
    capped: bool = False       # its drawn length did not fit the context left after its prompt


class GraphAnswers:
    def __init__(self, queries: tuple[Query, ...], options: tuple[str, ...], profiles: ProfileSet,
                 dataset: str | None, seed: int, follow: float, models: set[str]):
        self.options = options
        self.profiles = profiles
        self.dataset = dataset
        self.seed = seed
        self.follow = follow
        self.accuracy = {m: self._accuracy(m) for m in sorted(models)}
        rng = np.random.default_rng([seed, _STREAM])
        self.z = dict(zip((q.id for q in queries), rng.normal(size=len(queries))))
        self.index = {q.id: i for i, q in enumerate(queries)}

    def _accuracy(self, model: str) -> float:
        """The profile's dataset-wide level, else the dataset preset's assumed level for the model
        (as the synthetic workload's experts get: mosaic/workload/answer_model.py PRESETS)."""
        from mosaic.workload.answer_model import PRESETS

        table = self.profiles.model(model).accuracy
        level = (table.get(self.dataset) or {}).get("all") if self.dataset else None
        if level is None and self.dataset in PRESETS:
            level = PRESETS[self.dataset].base_accuracy.get(model)
        if level is None:
            raise ConfigError(f"topology: model {model} has no accuracy on dataset {self.dataset} in the profiles, "
                              "which the agent-graph answer model needs; add accuracy.<dataset>.all to its profile "
                              "or choose agents that have one")
        return float(level)

    def outcome(self, query: Query, agent: AgentSpec, agent_index: int, inputs: list[AgentOutcome],
                room: int) -> AgentOutcome:
        """The agent's outcome given the outputs it read (the finished precursors'); `room`: the
        output tokens the context window leaves after its prompt."""
        rng = np.random.default_rng([self.seed, _STREAM, self.index[query.id], agent_index])
        u_right, u_wrong, u_len = rng.random(3)
        conf_right, conf_wrong = rng.beta(*CONFIDENCE_RIGHT), rng.beta(*CONFIDENCE_WRONG)
        right = sum(o.correct for o in inputs)
        x = logit(self.accuracy[agent.model]) - self.z[query.id] + self.follow * (right - (len(inputs) - right))
        correct = bool(u_right < expit(x))
        if correct:
            answer = query.gold
        else:
            wrong = Counter(o.answer for o in inputs if not o.correct)
            if wrong:
                answer = sorted(wrong.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
            else:
                others = [o for o in self.options if o != query.gold] or [query.gold + "'"]
                answer = others[int(u_wrong * len(others))]
        dist = self.profiles.model(agent.model).output_for(self.dataset)
        drawn = round(float(dist.ppf(np.array([u_len]))[0]))
        tokens = int(max(1, min(room, drawn)))
        return AgentOutcome(tokens, answer, float(conf_right if correct else conf_wrong), correct, drawn > room)
