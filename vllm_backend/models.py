"""Model registry: a model name maps to an HF id or local path plus engine arguments (mosaic/conf/models/)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from mosaic.core.errors import ConfigError
from vllm_backend.tiny_models import ensure_tiny_model


class ModelRegistry:
    def __init__(self, cfg: Mapping[str, Any]):
        self.name = cfg.get("name", "?")
        self.engine = dict(cfg.get("engine") or {})
        self.models = dict(cfg.get("models") or {})
        self.cache_dir = cfg.get("cache_dir")
        if not self.models:
            raise ConfigError(f"models={self.name}: the registry lists no models")
        # Checked here, before any engine starts: each was an engine failing to start (exit 1).
        cache = Path(str(self.cache_dir)) if self.cache_dir is not None else None
        if cache is not None and cache.exists() and not cache.is_dir():
            raise ConfigError(f"models.cache_dir={self.cache_dir} is a file, not a folder for the tiny models; "
                              "give a folder (or null for the default)")
        length = self.engine.get("max_model_len", 4096)
        if isinstance(length, bool) or not isinstance(length, int) or length < 16:
            raise ConfigError(f"models.engine.max_model_len must be an integer number of tokens >= 16 (got {length!r})")

    def check_local_paths(self) -> None:
        """Each model's local `path` (not a hub id "org/name") is there: for engines started on this
        machine, where a missing one was an engine failing to start for every request. (Engines
        launched elsewhere, e.g. by Ray, look for the path there.)"""
        for model, entry in self.models.items():
            local = str((entry or {}).get("path") or "") if isinstance(entry, Mapping) else ""
            if local.startswith(("/", "./", "../", "~")) and not Path(local).expanduser().exists():
                raise ConfigError(f"models={self.name}.{model}.path: no such file or folder {local}; point it at "
                                  "the model's weights (or use hf_id for a model in the local Hugging Face cache)")

    @property
    def max_model_len(self) -> int:
        return int(self.engine.get("max_model_len", 4096))

    def resolve(self, model: str) -> tuple[str, dict[str, Any]]:
        """(path or HF id, vLLM EngineArgs keyword arguments) for a model name."""
        if model not in self.models:
            raise ConfigError(f"models={self.name}: no entry for model '{model}'; "
                              f"known: {sorted(self.models)}")
        entry = dict(self.models[model])
        entry.pop("kind", None)
        args = {**self.engine, **(entry.pop("engine", None) or {})}
        if "tiny" in entry:
            from pathlib import Path

            path = str(ensure_tiny_model(model, cache_dir=Path(self.cache_dir) if self.cache_dir else None,
                                         **entry["tiny"]))
            args.setdefault("load_format", "dummy")
        elif "path" in entry or "hf_id" in entry:
            path = str(entry.get("path") or entry["hf_id"])
        else:
            raise ConfigError(f"models={self.name}.{model}: give one of hf_id, path or tiny")
        return path, args
