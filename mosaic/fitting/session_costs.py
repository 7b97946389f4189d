"""Fitting T_m(N, mean, max) (mosaic.profiles.session_cost) from a multi-N profiling sweep.

The sweep runs sessions with a caller's `run_session` (the simulator's engine model, or a real engine
through the profiler), then `select` fits every form and keeps the best on held-out N.

`fit_file` (`python experiments/fit_session_costs.py`) fits every model of a profile file on the
simulator's engine model, as the paper fits T_m per model from a short multi-N profiling sweep on
the calibration set (4.1.2). The "engine" is mosaic/engine/v0.py's BatchEngine with the profile's cost model
and KV capacity on one GPU of the profile's memory (mosaic.engine.run_session, the simulator's own
session set-up): for every model, every output-length distribution it has (one per dataset, plus the
default), and N in NS, a calibration set of the dataset's calibration size is drawn (its mean and max
are the regression's inputs) and a session of N fresh lengths is run. An extra group with long
prompts covers aggregator sessions (question + the experts' answers).

Every form in mosaic.profiles.session_cost.FORMS is fitted; held-out error is leave-one-N-out (each
N's sessions predicted by a fit that never saw that N). The form with the lowest median held-out
error is written into the profile file as the model's `session_fit`, the other forms' errors printed.
experiments/profile_models.py runs the same sweep on a real engine (mosaic.fitting.real_engine.session_samples)."""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import yaml
from scipy import optimize

from mosaic.core.errors import ConfigError
from mosaic.core.progress import bar
from mosaic.profiles import ProfileSet, kv_capacity_tokens, load_profiles
from mosaic.profiles.session_cost import FORMS, SessionFit, features
from mosaic.workload.calibration import CALIBRATION_SIZES, DEFAULT_SIZE
from mosaic.engine import run_session


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


# ---------------------------------------------------------------- on the simulator's engine

NS = (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
REPS = 3
SEED = 0
# Median question prompt per dataset (synthetic.PRESETS; AIME problems are short statements).
PROMPTS = {"default": 200.0, "mmlu_pro": 260.0, "medmcqa": 120.0, "gpqa": 300.0, "aime24": 150.0}
AGGREGATOR_PROMPT = 4000.0   # question + three experts' answers, order of magnitude (pipeline.py)


def model_samples(name: str, profiles: ProfileSet, rng: np.random.Generator, ns=NS, reps=REPS
                  ) -> tuple[list[SessionSample], int]:
    """The sweep of one model on the simulator's engine; returns its sessions and KV capacity."""
    model, engine = profiles.model(name), profiles.engine
    kv = kv_capacity_tokens(model, engine, engine.memory_gib)

    def run(prompts: np.ndarray, outputs: np.ndarray) -> float:
        return run_session(model, engine, engine.memory_gib,
                           [(str(i), int(p), int(o)) for i, (p, o) in enumerate(zip(prompts, outputs))])

    dists = {"default": model.output, **model.outputs}
    sizes = {d: CALIBRATION_SIZES.get(d, DEFAULT_SIZE) for d in dists}
    max_len = engine.max_model_len
    samples = sweep(run, dists, PROMPTS, ns, reps, sizes, rng, max_len)
    samples += sweep(run, {"aggregator": model.output}, {"aggregator": AGGREGATOR_PROMPT}, ns, 1,
                     DEFAULT_SIZE, rng, max_len)
    return samples, kv


def write_fits(path: Path, fits: dict[str, dict]) -> None:
    """Put each model's `session_fit` into the profile file, keeping its header comment."""
    text = path.read_text()
    header = "".join(re.match(r"((?:#[^\n]*\n)*)", text).group(1))
    raw = yaml.safe_load(text)
    for name, fit in fits.items():
        raw["models"][name]["session_fit"] = fit
    path.write_text(header + yaml.safe_dump(raw, sort_keys=False, width=120))
    load_profiles(str(path))   # what we wrote must load


def fit_file(path: Path, names: list[str] | None = None, ns=NS, reps=REPS) -> dict[str, dict]:
    """Fit every (or the named) model of the profile file at `path` and write the fits into it."""
    path = Path(path)
    profiles = load_profiles(str(path))
    names = names or list(profiles.models)
    source = (f"simulator engine sweep (mosaic/engine/v0.py, {profiles.engine.device} profile): N in {list(ns)}, "
              f"{reps} calibration draws per dataset distribution + a long-prompt group; error on held-out N "
              "(leave one N out)")
    fits = {}
    print("session-time regression, held-out |predicted/simulated - 1| median / max per form:")
    print(f"  {'model':<30} " + "  ".join(f"{f:>17}" for f in FORMS))
    with bar(len(names), "session-time fits", unit="model") as progress:
        for i, name in enumerate(names):
            progress.set_postfix_str(name)
            t0 = time.time()
            samples, kv = model_samples(name, profiles, np.random.default_rng([SEED, i]), ns, reps)
            best, all_fits = select(samples, kv, profiles.engine.max_num_seqs, source)
            fits[name] = to_yaml(best)
            progress.write(f"  {name:<30} " + "  ".join(f"{f.error_median:7.1%} /{f.error_max:7.1%}"
                                                       for f in all_fits.values())
                           + f"   -> {best.form} ({len(samples)} sessions, {time.time() - t0:.1f} s)")
            progress.update(1)
    write_fits(path, fits)
    print(f"wrote session_fit for {len(fits)} models into {path}")
    return fits
