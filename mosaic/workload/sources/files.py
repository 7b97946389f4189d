"""Resolve data paths from configs: absolute, relative to the working directory, or relative to
the project root (so `../shared/data` works from the repository root and from tests alike)."""
from __future__ import annotations

from pathlib import Path

from mosaic.core.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[3]


def resolve(path: str | Path, field: str) -> Path:
    p = Path(path).expanduser()
    candidates = [p] if p.is_absolute() else [Path.cwd() / p, PROJECT_ROOT / p]
    for c in candidates:
        if c.exists():
            return c.resolve()
    raise ConfigError(f"{field}: '{path}' does not exist (looked in "
                      f"{', '.join(str(c) for c in candidates)}); set {field} to the right path")
