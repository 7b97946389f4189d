"""Router baselines, as serving stacks route: each request is bound when released to one replica
of its model, the one with the fewest outstanding (bound, not finished) requests
(`least_outstanding`, vLLM's data-parallel front end and production routers), or the less loaded of
two drawn at random (`p2c`, power of two choices). Replicas are the plan's sessions; a replica
runs the requests bound to it, handed over as it has room; one bound none is skipped."""
from __future__ import annotations

from collections import Counter, deque
from typing import Callable

import numpy as np

from mosaic.config.schema import RuntimeConfig
from mosaic.plan import Plan
from mosaic.runtime import RUNTIMES
from mosaic.runtime.base import Replica, Runtime, StageInputs


class Router(Runtime):
    late_binding = True

    def __init__(self, plan: Plan, inputs: StageInputs, cfg: RuntimeConfig | None = None):
        super().__init__(plan, inputs, cfg)
        self.queues: dict[Replica, deque[str]] = {r: deque() for rs in self.replicas.values() for r in rs}
        self.outstanding: Counter[Replica] = Counter()
        self.rng = np.random.default_rng(inputs.seed)

    def choose(self, replicas: list[Replica]) -> Replica:
        raise NotImplementedError

    def released(self, rids, t: float) -> None:
        for rid in rids:
            model = self.inputs.requests[rid].model
            replicas = self.replicas.get(model)
            if not replicas:
                raise RuntimeError(f"runtime '{self.name}': request {rid} of {model}, which the plan places nowhere")
            r = self.choose(replicas)
            self.queues[r].append(rid)
            self.outstanding[r] += 1
            self._bind(rid, r, t)

    def finished(self, rid: str, t: float) -> None:
        self.outstanding[self.bound[rid][0]] -= 1

    def should_start(self, replica: Replica, t: float) -> bool:
        return bool(self.queues.get(replica))

    def take(self, replica: Replica, fits: Callable[[int], bool], t: float) -> str | None:
        # already bound: the engine queues it whether or not its KV holds it yet
        q = self.queues.get(replica)
        return q.popleft() if q else None


@RUNTIMES.register("least_outstanding")
class LeastOutstanding(Router):
    name = "least_outstanding"

    def choose(self, replicas: list[Replica]) -> Replica:
        return min(replicas, key=lambda r: self.outstanding[r])   # ties: plan order


@RUNTIMES.register("p2c")
class PowerOfTwo(Router):
    name = "p2c"

    def choose(self, replicas: list[Replica]) -> Replica:
        if len(replicas) == 1:
            return replicas[0]
        a, b = self.rng.choice(len(replicas), 2, replace=False)
        ra, rb = replicas[a], replicas[b]
        return ra if self.outstanding[ra] <= self.outstanding[rb] else rb
