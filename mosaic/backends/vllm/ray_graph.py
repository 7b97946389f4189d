"""An agent-graph run's workers as Ray actors (backend.options.launcher=ray): each actor runs the
same worker loop as a local worker process (mosaic/backends/vllm/graph_worker.py), taking requests from its
own Ray queue and reporting on one shared Ray queue, so the graph's engines can sit on several
machines. Placed as the session launcher's actors are (RayLauncher: one placement group, a bundle
per worker, the same Ray start and shutdown); a dead actor is reported as that worker's failure."""
from __future__ import annotations

from typing import Any

from mosaic.backends.vllm.graph_worker import graph_worker_main
from mosaic.backends.vllm.ray_launcher import RayLauncher


class _GraphActor:
    def run(self, spec: dict[str, Any], inbox, out) -> None:
        graph_worker_main(spec, inbox, out)


class RayGraphWorkers:
    """What VllmGraphPool needs of its workers (see graph_pool.LocalWorkers), on Ray."""

    def __init__(self, launcher: RayLauncher):
        self.launcher = launcher
        self.actors: dict[int, Any] = {}
        self.refs: dict[Any, int] = {}
        self.queues: list[Any] = []
        self.pg = None
        self.shutdown = None

    def _queue(self):
        from ray.util.queue import Queue

        # No CPU of its own: the placement group holds the workers' (a queue actor waiting for one
        # would never start on a cluster the workers fill).
        q = Queue(actor_options={"num_cpus": 0})
        self.queues.append(q)
        return q

    def open(self, specs: list[dict[str, Any]]):
        self.bundles = [self.launcher._bundle(s) for s in specs]
        self.index = {s["worker"]: i for i, s in enumerate(specs)}
        self.shutdown = self.launcher._init(sum(b["CPU"] for b in self.bundles))
        self.pg = self.launcher.placement_group(self.bundles)
        self.out = self._queue()
        return self.out

    def inbox(self):
        return self._queue()

    def start(self, spec: dict[str, Any], inbox) -> None:
        import ray

        w = spec["worker"]
        i = self.index[w]
        options, env = self.launcher.actor_options(self.pg, i, self.bundles[i], spec.get("env") or {})
        self.actors[w] = ray.remote(_GraphActor).options(**options).remote()
        self.refs[self.actors[w].run.remote({**spec, "env": env}, inbox, self.out)] = w

    def gone(self, crashed_only: bool = False) -> dict[int, str]:
        import ray
        from ray.exceptions import RayActorError, RayError

        if not self.refs:
            return {}
        done, _ = ray.wait(list(self.refs), num_returns=len(self.refs), timeout=0)
        out = {}
        for ref in done:
            w = self.refs[ref]
            try:
                ray.get(ref)
                if not crashed_only:
                    out[w] = "ended without reporting"
            except RayActorError as e:
                out[w] = f"died (its Ray actor): {' '.join(str(e).split())[:300]}"
            except RayError as e:
                out[w] = f"failed (its Ray task): {' '.join(str(e).split())[:300]}"
        return out

    def close(self, clean: bool) -> None:
        """Every actor (and so its engine), the queues and the placement group ended; a private
        Ray shut down. Clean: the workers were told to stop, and get a moment to end their engines."""
        import ray

        try:
            if clean and self.refs:
                ray.wait(list(self.refs), num_returns=len(self.refs), timeout=self.launcher.poll_s * 20)
        finally:
            RayLauncher.end([*self.actors.values(), *(q.actor for q in self.queues)], self.pg, self.shutdown)
