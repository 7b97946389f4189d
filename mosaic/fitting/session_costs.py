"""Fitting T_m(N, mean, max) (mosaic.profiles.session_cost) from a multi-N profiling sweep.

The sweep runs sessions with a caller's `run_session` (the simulator's engine model, or a real engine
through the profiler), then `select` fits every form and keeps the best on held-out N."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
from scipy import optimize

from mosaic.core.errors import ConfigError
from mosaic.profiles.session_cost import FORMS, SessionFit, features


@dataclass(frozen=True)
class SessionSample:
    """One profiled session: its inputs as the scheduler would know them, and its wall time."""

    n: int
    mean: float        # mean output tokens of the calibration set the session was drawn from
    max: float         # max output tokens of that calibration set
    prompt: float      # mean prompt tokens
    n_cal: int         # size of that calibration set
    wall_s: float
    group: str = ""    # which length distribution it came from (reporting only)


def to_yaml(fit: SessionFit, digits: int = 6) -> dict[str, Any]:
    return {"form": fit.form, "coef": [float(f"{c:.{digits}g}") for c in fit.coef],
            "kv_tokens": fit.kv_tokens, "max_num_seqs": fit.max_num_seqs,
            "error_median": round(fit.error_median, 4), "error_max": round(fit.error_max, 4),
            "n_points": fit.n_points, "source": fit.source}


# ---------------------------------------------------------------- fitting

def _design(samples: Sequence[SessionSample], form: str, kv: float, seqs: float) -> tuple[np.ndarray, np.ndarray]:
    x = np.array([features(form, s.n, s.mean, s.max, s.prompt, s.n_cal, kv, seqs) for s in samples])
    y = np.array([s.wall_s for s in samples])
    return x, y


def fit_coef(samples: Sequence[SessionSample], form: str, kv_tokens: int, max_num_seqs: int) -> np.ndarray:
    """Non-negative least squares on relative error (each row divided by its measured time), with
    columns scaled to unit norm so coefficients of very different magnitude are solved alike."""
    x, y = _design(samples, form, kv_tokens, max_num_seqs)
    if np.any(y <= 0):
        raise ConfigError("session fit: every profiled session needs a positive wall time")
    a = x / y[:, None]
    scale = np.linalg.norm(a, axis=0)
    scale[scale == 0] = 1.0
    coef, _ = optimize.nnls(a / scale, np.ones(len(y)))
    return coef / scale


def held_out_errors(samples: Sequence[SessionSample], form: str, kv_tokens: int, max_num_seqs: int) -> np.ndarray:
    """|pred / measured - 1| of every sample, each predicted by a fit that never saw its N."""
    ns = sorted({s.n for s in samples})
    if len(ns) < 3:
        raise ConfigError(f"session fit: need sessions at >= 3 distinct N to hold one out (got {ns})")
    errs = []
    for n in ns:
        train = [s for s in samples if s.n != n]
        test = [s for s in samples if s.n == n]
        coef = fit_coef(train, form, kv_tokens, max_num_seqs)
        x, y = _design(test, form, kv_tokens, max_num_seqs)
        errs.extend(np.abs(x @ coef / y - 1))
    return np.array(errs)


def fit_form(samples: Sequence[SessionSample], form: str, kv_tokens: int, max_num_seqs: int,
             source: str = "") -> SessionFit:
    err = held_out_errors(samples, form, kv_tokens, max_num_seqs)
    coef = fit_coef(samples, form, kv_tokens, max_num_seqs)
    return SessionFit(form, tuple(float(c) for c in coef), int(kv_tokens), int(max_num_seqs),
                      float(np.median(err)), float(err.max()), len(samples), source)


def select(samples: Sequence[SessionSample], kv_tokens: int, max_num_seqs: int, source: str = "",
           forms: Iterable[str] = FORMS) -> tuple[SessionFit, dict[str, SessionFit]]:
    """Fit every form; keep the one with the lowest held-out median error (max error breaks ties)."""
    fits = {f: fit_form(samples, f, kv_tokens, max_num_seqs, source) for f in forms}
    best = min(fits.values(), key=lambda f: (round(f.error_median, 4), f.error_max))
    return best, fits


# ---------------------------------------------------------------- the sweep

RunSession = Callable[[np.ndarray, np.ndarray], float]   # (prompt tokens, output tokens) -> wall s


def sweep(run_session: RunSession, distributions: Mapping[str, Any], prompt_tokens: Mapping[str, float],
          ns: Sequence[int], reps: int, calibration_size: Mapping[str, int] | int,
          rng: np.random.Generator, max_tokens: int | None = None) -> list[SessionSample]:
    """Profile sessions at every N in `ns`, `reps` times per length distribution.

    Each repetition draws a calibration set from the distribution (its mean and max are the inputs
    the scheduler will have) and a session of N fresh lengths from the same distribution, as the
    test questions are fresh draws from the dataset the calibration set came from.
    distributions: name -> object with .sample(rng, n) (mosaic.profiles.LengthDistribution)."""
    out = []
    for name, dist in distributions.items():
        n_cal = calibration_size if isinstance(calibration_size, int) else calibration_size.get(name, 350)
        prompt = float(prompt_tokens.get(name, 200.0))
        for _ in range(reps):
            cal = dist.sample(rng, n_cal)
            for n in ns:
                outs = dist.sample(rng, n)
                prompts = np.maximum(1, np.rint(rng.lognormal(np.log(prompt), 0.4, n))).astype(int)
                if max_tokens is not None:
                    outs = np.clip(outs, 1, max_tokens - prompts)
                out.append(SessionSample(n, float(cal.mean()), float(cal.max()), float(prompts.mean()), n_cal,
                                         float(run_session(prompts, outs)), name))
    return out
