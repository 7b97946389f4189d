"""Workers as Ray actors (backend.options.launcher=ray): the real executor across machines.

Each worker of a plan is one Ray actor that runs its sessions (one vLLM engine at a time) exactly
as a local worker process does (mosaic.backends.vllm.worker.worker_main), and returns its result message.
The actors are placed through one placement group, a bundle per worker: a tensor-parallel
session's lead gets a bundle with all its group's GPUs, so its ranks land on one node. Finished
requests stream back through a Ray queue (the progress bar). An actor that dies (its node lost,
the OOM killer) is reported as that worker's failure, each of its requests with the reason;
nothing is silently dropped. The run ends every actor and the placement group, whatever happens.

Ray itself: with ray_address `local` (backend.options; a required choice, mosaic/backends/vllm/backend.py
make_launcher), a private Ray instance is started for the run on 127.0.0.1 (no dashboard) and shut
down after it; Ray 2.60 still binds its GCS and raylet to all interfaces. `auto` or
`ray://host:port` joins a running cluster, which the user started and exposes as they chose.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Iterable

from mosaic.core.errors import ConfigError
from mosaic.core.interrupts import sigint_deferred
from mosaic.backends.vllm.launcher import ProgressCallback, WorkerTarget, failed_worker
from mosaic.backends.vllm.worker import worker_main


class _Channel:
    """What worker_main puts messages on, inside the actor: progress goes to the driver's Ray
    queue at once, the result message is kept and returned by the actor's method."""

    def __init__(self, progress_queue):
        self.queue, self.result = progress_queue, None

    def put(self, msg: dict[str, Any]) -> None:
        if "progress" in msg:
            self.queue.put_nowait(msg)
        else:
            self.result = msg


class _WorkerActor:
    def run(self, target: WorkerTarget, spec: dict[str, Any], progress_queue) -> dict[str, Any] | None:
        channel = _Channel(progress_queue)
        target(spec, channel)
        return channel.result


def require_ray() -> None:
    import importlib.util
    if importlib.util.find_spec("ray") is None:
        raise ConfigError("backend.options.launcher=ray: Ray is not installed; `pip install -e '.[ray]'` "
                          "(or set backend.options.launcher=local)")


class RayLauncher:
    """address: None (a private local Ray for this run, on 127.0.0.1), "auto" or "ray://host:port".
    cpus_per_worker / gpus_per_worker: each worker's bundle (a TP lead's GPUs are multiplied by its
    group's size). On GPUs Ray assigns the devices, so the local launcher's CUDA_VISIBLE_DEVICES is
    dropped from each worker's environment. target: what each actor runs (tests pass fakes)."""

    def __init__(self, address: str | None = None, cpus_per_worker: float = 1.0, gpus_per_worker: float = 0.0,
                 target: WorkerTarget = worker_main, poll_s: float = 0.5, ready_timeout_s: float = 120.0):
        if address is not None and not isinstance(address, str):
            raise ConfigError(f"backend.options.ray_address must be null, 'auto' or 'ray://host:port' (got {address!r})")
        for name, v in (("ray_cpus_per_worker", cpus_per_worker), ("ray_gpus_per_worker", gpus_per_worker)):
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
                raise ConfigError(f"backend.options.{name} must be a number >= 0 (got {v!r})")
        require_ray()
        self.address, self.cpus, self.gpus = address, float(cpus_per_worker), float(gpus_per_worker)
        self.target, self.poll_s, self.ready_timeout_s = target, poll_s, ready_timeout_s

    def _init(self, cpus_needed: float) -> Callable[[], None]:
        """Ray up for this run; returns what undoes it (a private instance is shut down). A private
        instance offers at least the CPUs the run's bundles ask for: like the local launcher, it
        shares this host's cores among the workers (each engine is bound to its own cores)."""
        import math
        import os

        import signal

        import ray
        if ray.is_initialized():
            return lambda: None
        # ray.init puts its own SIGTERM handler in (sys.exit(15): exit 15, no error.json, Ray's
        # crash dump on stderr); the run's own (mosaic/cli/signals.py: 143, one line) goes back.
        try:
            handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
        except ValueError:   # not the main thread
            handlers = {}
        try:
            if self.address is None:
                ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=False,
                         num_cpus=max(os.cpu_count() or 1, math.ceil(cpus_needed)), log_to_driver=True,
                         configure_logging=False)
            else:
                try:
                    ray.init(address=self.address, log_to_driver=True, configure_logging=False)
                except ConnectionError as e:
                    raise ConfigError(f"backend.options.ray_address={self.address}: no Ray cluster answered there "
                                      f"({' '.join(str(e).split())[:200]}); start one (`ray start --head`) or use "
                                      "ray_address=local for a private one") from None
        finally:
            for s, h in handlers.items():
                if h is not None:
                    signal.signal(s, h)
        return ray.shutdown

    def _bundle(self, spec: dict[str, Any]) -> dict[str, float]:
        gpus = self.gpus * len(spec.get("tp_workers") or (spec["worker"],))
        return {"CPU": self.cpus, **({"GPU": gpus} if gpus else {})}

    def placement_group(self, bundles: list[dict[str, float]]):
        """One placement group, a bundle per worker, ready (or a ConfigError saying what is short)."""
        import ray
        from ray.exceptions import GetTimeoutError
        from ray.util.placement_group import placement_group

        pg = placement_group(bundles, strategy="PACK")
        try:
            ray.get(pg.ready(), timeout=self.ready_timeout_s)
        except GetTimeoutError:
            from ray.util.placement_group import remove_placement_group

            remove_placement_group(pg)
            raise ConfigError(f"backend.options.launcher=ray: the Ray cluster cannot place {len(bundles)} workers "
                              f"({bundles[0]} each) within {self.ready_timeout_s:.0f} s; it has "
                              f"{ray.cluster_resources()}: lower ray_cpus_per_worker / ray_gpus_per_worker "
                              "or add nodes") from None
        return pg

    def actor_options(self, pg, index: int, bundle: dict[str, float], env: dict[str, str]) -> tuple[dict, dict]:
        """(Ray actor options for the worker in bundle `index`, the environment it runs with)."""
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        env = dict(env or {})
        if self.gpus:
            env.pop("CUDA_VISIBLE_DEVICES", None)   # Ray assigns the bundle's GPUs
        return {"num_cpus": bundle["CPU"], "num_gpus": bundle.get("GPU", 0), "name": None,
                "scheduling_strategy": PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=index),
                "runtime_env": {"env_vars": env} if env else None}, env

    def run(self, specs: list[dict[str, Any]], timeout_s: float,
            on_progress: ProgressCallback | None = None) -> list[dict[str, Any]]:
        import ray
        from ray.exceptions import RayActorError, RayError
        from ray.util.queue import Empty, Queue

        bundles = [self._bundle(s) for s in specs]
        shutdown = self._init(sum(b["CPU"] for b in bundles))
        actors: dict[int, Any] = {}
        pg = None
        results: dict[int, dict[str, Any]] = {}
        try:
            pg = self.placement_group(bundles)
            progress = Queue()
            actor_cls = ray.remote(_WorkerActor)
            refs = {}
            for i, spec in enumerate(specs):
                w = spec["worker"]
                options, env = self.actor_options(pg, i, bundles[i], spec.get("env") or {})
                actors[w] = actor_cls.options(**options).remote()
                refs[actors[w].run.remote(self.target, {**spec, "env": env}, progress)] = w
            pending = list(refs)
            deadline = time.monotonic() + timeout_s
            while pending and time.monotonic() < deadline:
                done, pending = ray.wait(pending, num_returns=1,
                                         timeout=min(self.poll_s, max(0.01, deadline - time.monotonic())))
                self._drain(progress, on_progress, Empty)
                for ref in done:
                    w = refs[ref]
                    try:
                        results[w] = ray.get(ref) or failed_worker(w, f"worker {w}'s Ray actor returned no result")
                    except RayActorError as e:
                        results[w] = failed_worker(w, f"worker {w}'s Ray actor died: {' '.join(str(e).split())[:300]}")
                    except RayError as e:
                        results[w] = failed_worker(w, f"worker {w}'s Ray task failed: {' '.join(str(e).split())[:300]}")
            self._drain(progress, on_progress, Empty)
            for s in specs:
                results.setdefault(s["worker"], failed_worker(s["worker"], f"worker {s['worker']} did not finish "
                                                                           f"within {timeout_s:.0f} s"))
        finally:
            # Also on KeyboardInterrupt / SystemExit: no actor, and so no engine, outlives run().
            self.end(actors.values(), pg, shutdown)
        return [results[s["worker"]] for s in specs]

    @staticmethod
    def end(actors: Iterable[Any], pg, shutdown: Callable[[], None] | None) -> None:
        """Kill the actors, remove the placement group (if any), shut a private Ray down; a second
        Ctrl-C waits for that (else Ray's own agents outlived the run)."""
        with sigint_deferred():
            RayLauncher._end(actors, pg, shutdown)

    @staticmethod
    def _end(actors: Iterable[Any], pg, shutdown: Callable[[], None] | None) -> None:
        import ray
        from ray.util.placement_group import remove_placement_group

        try:
            for a in actors:
                try:
                    ray.kill(a, no_restart=True)
                except Exception:  # noqa: BLE001 - already gone
                    pass
            if pg is not None:
                try:
                    remove_placement_group(pg)
                except Exception:  # noqa: BLE001
                    pass
        finally:
            if shutdown is not None:
                shutdown()

    @staticmethod
    def _drain(progress, on_progress: ProgressCallback | None, empty: type) -> None:
        while True:
            try:
                msg = progress.get_nowait()
            except empty:
                return
            if on_progress is not None:
                on_progress(msg)
