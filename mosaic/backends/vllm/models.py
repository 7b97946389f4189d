"""Model registry: a model name maps to an HF id or local path plus engine arguments (mosaic/conf/models/)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Collection, Mapping

from mosaic.core.errors import ConfigError
from mosaic.backends.vllm.tiny_models import ensure_tiny_model


def _reads_as_path(ref: str) -> bool:
    """Whether a model reference can only be a local file or folder: it starts like a path, or has
    more than the one '/' of a Hub id "org/name". (One that reads "org/name" is a local path only
    where it exists.) The one rule for both the local-path check and the Hub-id list."""
    return ref.startswith(("/", ".", "~")) or ref.count("/") > 1


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
            if local and _reads_as_path(local) and not Path(local).expanduser().exists():
                raise ConfigError(f"models={self.name}.{model}.path: no such file or folder {local}; point it at "
                                  "the model's weights (or use hf_id for a model in the local Hugging Face cache)")

    def hub_ids(self) -> list[tuple[str, str]]:
        """(model, Hub id) for each model the engine fetches from the Hugging Face Hub: an hf_id, or a
        `path` that is no local file or folder but reads as "org/name" (vLLM takes it as an id)."""
        out = []
        for model, entry in self.models.items():
            if not isinstance(entry, Mapping) or "tiny" in entry:
                continue
            ref = str(entry.get("path") or entry.get("hf_id") or "")
            if ref.count("/") == 1 and not _reads_as_path(ref) and not Path(ref).exists():
                out.append((model, ref))
        return out

    def check_hub_models(self, only: Collection[str] | None = None, timeout_s: float = 10.0) -> None:
        """Each model named by a Hub id is in the local Hugging Face cache, or the Hub has it and lets
        this machine fetch it. Where neither held (an offline machine, a mistyped id, a gated model
        without access), every engine of the run retried the download and failed for each of its
        requests (measured offline, models=paper on the smoke workload: 116 s, all 192 requests
        failed, exit 1); here it is one line before any engine starts. `only`: the
        models the run may use (a registry may list more)."""
        hub = [(m, r) for m, r in self.hub_ids() if only is None or m in only]
        if not hub or os.environ.get("VLLM_USE_MODELSCOPE", "").lower() in ("1", "true"):
            return
        try:
            import huggingface_hub as hf
            from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError
        except ImportError:   # vLLM brings it; without it vLLM could not fetch a model either
            return
        missing = [(m, r) for m, r in hub if not isinstance(hf.try_to_load_from_cache(r, "config.json"), str)]
        if not missing:
            return
        from huggingface_hub import constants

        offline = any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on")
                      for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
        fix = (f"download it where the Hub can be reached (`hf download {{repo}}`, into {constants.HF_HUB_CACHE} "
               "or the HF_HUB_CACHE the engines use) or point models.models.{model}.path at its weights")
        for model, repo in missing:
            where = f"models={self.name}.{model}: {repo} is not in the local Hugging Face cache"
            if offline:
                raise ConfigError(f"{where} and HF_HUB_OFFLINE is set; {fix.format(repo=repo, model=model)}")
            try:
                info = hf.model_info(repo, timeout=timeout_s)
                if info.gated:
                    hf.auth_check(repo)
            except GatedRepoError:
                raise ConfigError(f"{where}, and it is gated on the Hub: accept its licence on huggingface.co and "
                                  "log in (`hf auth login`, or set HF_TOKEN) with that account") from None
            except RepositoryNotFoundError:
                raise ConfigError(f"{where}, and the Hub has no model {repo} (or it is private): check "
                                  f"models.models.{model}.hf_id") from None
            except Exception as e:   # noqa: BLE001 -- no connection, DNS, a proxy: the engine would fail alike
                raise ConfigError(f"{where} and the Hub ({constants.ENDPOINT}) cannot be reached "
                                  f"({type(e).__name__}: {str(e)[:200]}); {fix.format(repo=repo, model=model)}"
                                  ) from None

    @property
    def max_model_len(self) -> int:
        return int(self.engine.get("max_model_len", 4096))

    def reference(self, model: str) -> str:
        """How a profile names `model` portably: "tiny:<name>" for a tiny stand-in (built at run time
        under models.cache_dir, else $MOSAIC_CACHE/tiny_models or ~/.cache/mosaic/tiny_models), else
        its hf_id or path as the registry gives it."""
        entry = self.models.get(model) or {}
        if "tiny" in entry:
            return f"tiny:{model}"
        return str(entry.get("hf_id") or entry.get("path") or model)

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
