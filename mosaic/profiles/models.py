"""Per-model profiles: memory, load time, output-length distribution and the engine cost model.

Profiles are data (YAML under mosaic/profiles/data/ or any path). Both the schedulers' cost predictor and the
simulator read the engine cost model from here, so the two can never drift apart.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any


from mosaic.core.errors import ConfigError

from mosaic.profiles.difficulty import DifficultyModel
from mosaic.profiles.engine import EngineProfile, TensorParallelProfile
from mosaic.profiles.kernels import KernelCosts
from mosaic.profiles.lengths import LengthDistribution
from mosaic.profiles.session_cost import SessionFit


log = logging.getLogger(__name__)
_SAID: set[tuple[str, str]] = set()   # (model, dataset) warned about once per process


@dataclass(frozen=True)
class ModelProfile:
    name: str
    kind: str  # "reasoning" | "instruct"
    hf_id: str
    params_b: float
    weight_gib: float
    kv_bytes_per_token: int
    n_layers: int
    hidden_size: int
    load_time_s: float
    output: LengthDistribution
    sources: tuple[str, ...] = ()
    # dataset -> category -> P(correct); "all" is the dataset-wide level (also the fallback for a
    # category the table lacks). Empty when the profile says nothing about answers.
    accuracy: dict[str, dict[str, float]] = field(default_factory=dict)
    # Measured on a real engine by experiments/profile_models.py; when present they replace the values
    # derived from hardware figures. cost: the fitted step model (COST_KEYS, milliseconds).
    cost: dict[str, float] = field(default_factory=dict)
    kv_capacity: int | None = None      # KV-cache tokens the engine reported
    unload_time_s: float = 0.0          # engine shutdown before the worker's next session
    warmup_s: float = 0.0               # a fresh engine's one-off start of serving (first request), measured
    # A model writes differently long answers per dataset: dataset -> lengths there. `output` is
    # the default for a dataset the profile does not list.
    outputs: dict[str, LengthDistribution] = field(default_factory=dict)
    # T_m(N, mean, max) fitted by experiments/fit_session_costs.py (mosaic.profiles.session_cost); None: the
    # cost predictor falls back to its analytic formula.
    session_fit: SessionFit | None = None
    # Its own tensor-parallel scaling (measured on it); None: the engine's (EngineProfile.tp()).
    tensor_parallel: TensorParallelProfile | None = None
    # Its kernels timed on the profile's device (engine.kernels); None: the terms derived from the
    # engine's hardware figures.
    kernels: KernelCosts | None = None

    def tp(self, engine: EngineProfile, degree: int) -> TensorParallelProfile:
        """How a TP-`degree` engine of this model scales: its own block where that measures (or
        derives) the degree, else the engine's (e.g. its own at 2, the engine's at 4)."""
        own = self.tensor_parallel
        if own is not None and (own.measured(degree) or own.fit is not None):
            return own
        return engine.tp()

    def output_for(self, dataset: str | None) -> LengthDistribution:
        """Output lengths on `dataset` (the default distribution when it has none of its own)."""
        if dataset and self.outputs and dataset not in self.outputs and (self.name, dataset) not in _SAID:
            # A profile that lists datasets but not this one: a misspelt key ('mmlu-pro') looks the same
            _SAID.add((self.name, dataset))
            log.warning("profile of %s: its output lengths list datasets %s but not '%s', this run's; its "
                        "default entry is used", self.name, ", ".join(sorted(self.outputs)), dataset)
        return self.outputs.get(dataset, self.output) if dataset else self.output


# t_step = step_ms + seq_ms * sequences + token_ms * tokens in step + ctx_ms * sum(decode context)
#          + len2_ms * sum(prefill attention: (done + chunk)^2 - done^2, L^2 for a whole prompt)
COST_KEYS = ("step_ms", "token_ms", "ctx_ms", "len2_ms", "seq_ms")


@dataclass(frozen=True)
class ProfileSet:
    engine: EngineProfile
    models: dict[str, ModelProfile] = field(default_factory=dict)
    # dataset -> how difficulty couples answers and lengths there, measured on traces
    # (experiments/fit_difficulty.py); a dataset without an entry gets the built-in default.
    datasets: dict[str, DifficultyModel] = field(default_factory=dict)
    # Where the profile was calibrated to a machine (mosaic/profiles/calibration.py): what was
    # scaled from which profile, as its `calibration` section says; None for a profile as measured.
    calibration: dict[str, Any] | None = None

    def model(self, name: str) -> ModelProfile:
        try:
            return self.models[name]
        except KeyError:
            raise ConfigError(f"model '{name}' has no profile; known models: "
                              f"{', '.join(sorted(self.models))}") from None
