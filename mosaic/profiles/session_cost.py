"""The session-time regression T_m(N, mean, max) the paper fits per model (4.1.2).

A session serves N requests of one model. Its wall time is predicted from N and from the mean and
max output length measured on the calibration set, plus the mean prompt the scheduler can see.
Coefficients are fitted per model from a multi-N profiling sweep: on the simulator's engine model
(experiments/fit_session_costs.py) or on a real engine (experiments/profile_models.py). Both call
`sweep` with their own way of running one session, then `select`.

Every form is linear in its coefficients (fitted non-negative, least relative error), over
features built from the inputs and two engine constants (KV-cache tokens, max running sequences):

  b     = min(N, max_num_seqs, kv_tokens / (prompt + mean))   running batch, slot- or KV-bound
  S     = N * mean / b                                        decode steps of the bulk
  max_N = mean + (max - mean) ln(1 + N) / ln(1 + n_cal)       expected longest of N requests: the
          calibration max belongs to n_cal draws, and the maximum of an exponential-tailed sample
          grows with ln(size)
  tail  = max(0, max_N - S)                                   steps the longest request runs alone

  linear:  T = c0 + c1 N mean + c2 max + c3 N
  steps:   T = c0 + c1 S + c2 max
  batched: T = c0 + c1 S + c2 N mean + c3 N mean (prompt + mean) + c4 tail
           (per-step cost x steps, per-token linear-layer cost, attention over the context,
            and the longest request decoding alone at small batch)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from mosaic.core.errors import ConfigError


def _batch(n: float, mean: float, prompt: float, kv_tokens: float, max_num_seqs: float) -> float:
    return max(1.0, min(n, max_num_seqs, kv_tokens / max(1.0, prompt + mean)))


def expected_max(n: float, mean: float, max_out: float, n_cal: float) -> float:
    return mean + (max_out - mean) * np.log1p(n) / np.log1p(max(n_cal, 1.0))


def features(form: str, n: float, mean: float, max_out: float, prompt: float, n_cal: float,
             kv_tokens: float, max_num_seqs: float) -> np.ndarray:
    if form == "linear":
        return np.array([1.0, n * mean, max_out, n])
    steps = n * mean / _batch(n, mean, prompt, kv_tokens, max_num_seqs)
    if form == "steps":
        return np.array([1.0, steps, max_out])
    if form == "batched":
        tail = max(0.0, expected_max(n, mean, max_out, n_cal) - steps)
        return np.array([1.0, steps, n * mean, n * mean * (prompt + mean), tail])
    raise ConfigError(f"session_fit.form: unknown form '{form}'; choose one of {list(FORMS)}")


FORMS = ("linear", "steps", "batched")


@dataclass(frozen=True)
class SessionFit:
    form: str
    coef: tuple[float, ...]
    kv_tokens: int               # engine constants the features use
    max_num_seqs: int
    error_median: float          # |predicted / measured - 1| on held-out N (leave one N out)
    error_max: float
    n_points: int
    source: str = ""

    def predict(self, n: int, mean: float, max_out: float, prompt: float, n_cal: int) -> float:
        if n <= 0:
            return 0.0
        x = features(self.form, n, mean, max_out, prompt, n_cal, self.kv_tokens, self.max_num_seqs)
        return float(np.dot(self.coef, x))


def parse_session_fit(raw: Any, where: str) -> SessionFit:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping (form, coef, kv_tokens, max_num_seqs, ...)")
    try:
        fit = SessionFit(form=str(raw["form"]), coef=tuple(float(c) for c in raw["coef"]),
                         kv_tokens=int(raw["kv_tokens"]), max_num_seqs=int(raw["max_num_seqs"]),
                         error_median=float(raw.get("error_median", float("nan"))),
                         error_max=float(raw.get("error_max", float("nan"))),
                         n_points=int(raw.get("n_points", 0)), source=str(raw.get("source", "")))
    except KeyError as e:
        raise ConfigError(f"{where}: missing field {e.args[0]!r}") from None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None
    expected = len(features(fit.form, 1, 1, 1, 1, 1, 1, 1))   # also rejects an unknown form
    if len(fit.coef) != expected:
        raise ConfigError(f"{where}.coef: form '{fit.form}' takes {expected} coefficients, got {len(fit.coef)}")
    return fit
