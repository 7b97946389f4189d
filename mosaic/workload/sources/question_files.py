"""Question files (Symbolic-MoE release format): a JSON list of {question, gold_answer[, category]}."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any


from mosaic.core.errors import ConfigError


@lru_cache(maxsize=16)
def _read(path: Path, mtime: float) -> tuple[dict[str, Any], ...]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: not a readable JSON file ({e})") from None
    if not isinstance(data, list):
        raise ConfigError(f"{path}: expected a JSON list of question objects, got {type(data).__name__}")
    for i, rec in enumerate(data):
        if not isinstance(rec, dict):
            raise ConfigError(f"{path}: item {i} is not an object")
        for field in ("question", "gold_answer"):
            if not isinstance(rec.get(field), str) or not rec[field].strip():
                raise ConfigError(f"{path}: item {i} lacks a non-empty string field '{field}'")
    return tuple(data)


def load_questions(path: Path, field: str = "workload.questions_dir",
                   what: str = "question file") -> tuple[dict[str, Any], ...]:
    """A question file: non-empty JSON list of {question, gold_answer[, category]}; errors name the
    config `field` that points at it, the path and the item."""
    if not path.is_file():
        raise ConfigError(f"{field}: {what} '{path}' does not exist; set {field} to where it is")
    try:
        records = _read(path, path.stat().st_mtime)
    except ConfigError as e:
        raise ConfigError(f"{field}: {e}") from None
    if not records:  # nothing to run, or nothing to calibrate the router and cost model on
        raise ConfigError(f"{field}: {what} {path} is empty (a JSON list with no items); point {field} at "
                          "a file with at least one question")
    return records
