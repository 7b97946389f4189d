"""GPU workers. One model is resident per worker at a time (the paper's setting)."""
from __future__ import annotations

from dataclasses import dataclass

from mosaic.core.errors import ConfigError


@dataclass(frozen=True)
class Worker:
    id: int
    memory_gib: float
    device: str = "A100-80GB"


@dataclass(frozen=True)
class Cluster:
    workers: tuple[Worker, ...]
    # Workers that share one host's cores and memory bandwidth (0-1, 2-3, ... with 2): their steps
    # slow each other down as the profile's engine.host_contention measured. 1: every worker alone.
    workers_per_host: int = 1

    @property
    def n(self) -> int:
        return len(self.workers)

    @classmethod
    def uniform(cls, n_workers: int, memory_gib: float, device: str = "A100-80GB",
                workers_per_host: int = 1) -> "Cluster":
        if not isinstance(n_workers, int) or n_workers < 1:
            raise ConfigError(f"cluster.n_workers must be an integer >= 1 (got {n_workers!r})")
        if memory_gib <= 0:
            raise ConfigError(f"cluster.memory_gib must be > 0 (got {memory_gib!r})")
        if not isinstance(workers_per_host, int) or workers_per_host < 1:
            raise ConfigError(f"cluster.workers_per_host must be an integer >= 1 (got {workers_per_host!r})")
        return cls(tuple(Worker(i, float(memory_gib), device) for i in range(n_workers)), workers_per_host)
