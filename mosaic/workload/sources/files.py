"""Resolve data paths from configs: absolute, relative to the working directory, or relative to
the project root (so `../shared/data` works from the repository root and from tests alike)."""
from __future__ import annotations

from pathlib import Path

from mosaic.core.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[3]


def resolve(path: str | Path, field: str, want: str | None = None) -> Path:
    """The path, found as the module docstring says; `want` "dir" or "file": what it must be, so
    that a folder setting naming a file is blamed on that setting, not on the files read from it."""
    if not str(path).strip():   # Path('') is '.', which exists: the files in it would take the blame
        raise ConfigError(f"{field}: the setting is empty; set it to the {'folder' if want == 'dir' else 'file'} "
                          "to read")
    p = Path(path).expanduser()
    candidates = [p] if p.is_absolute() else [Path.cwd() / p, PROJECT_ROOT / p]
    for c in candidates:
        if c.exists():
            where = "" if str(c.resolve()) == str(path) else f" ({c.resolve()})"
            if want == "dir" and not c.is_dir():
                raise ConfigError(f"{field}: '{path}' is a file{where}, not a folder; set {field} to the folder "
                                  "that holds the files")
            if want == "file" and c.is_dir():
                raise ConfigError(f"{field}: '{path}' is a folder{where}, not a file; set {field} to a file in it")
            return c.resolve()
    raise ConfigError(f"{field}: '{path}' does not exist (looked in "
                      f"{', '.join(str(c) for c in candidates)}); set {field} to the right path")
