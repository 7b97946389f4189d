"""The session-time regression T_m(N, mean, max) the paper fits per model (4.1.2).

A session serves N requests of one model. Its wall time is predicted from N and from the mean and
max output length measured on the calibration set, plus the mean prompt the scheduler can see.
Coefficients are fitted per model from a multi-N profiling sweep: on the simulator's engine model
(experiments/fit_session_costs.py) or on a real engine (experiments/profile.py). Both call
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
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
from scipy import optimize

from mosaic.errors import ConfigError


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
class SessionSample:
    """One profiled session: its inputs as the scheduler would know them, and its wall time."""

    n: int
    mean: float        # mean output tokens of the calibration set the session was drawn from
    max: float         # max output tokens of that calibration set
    prompt: float      # mean prompt tokens
    n_cal: int         # size of that calibration set
    wall_s: float
    group: str = ""    # which length distribution it came from (reporting only)


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
