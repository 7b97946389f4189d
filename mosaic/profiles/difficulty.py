"""How a question's difficulty couples the experts' answers and output lengths.

Each question q has a latent difficulty z_q and a latent verbosity v_q, both N(0, 1) and shared by
every model that answers it:

* correctness: P(model m right on q) = expit(b_m,c - a z_q), a two-parameter IRT model with a
  common discrimination a (`accuracy`). b_m,c is solved so that the *marginal* accuracy over z is
  the table's (an expert's published accuracy is an average over questions, not its accuracy on a
  question of average difficulty; the two differ more the larger a is).
* length: a Gaussian copula on rho z_q + s v_q + sqrt(1 - rho^2 - s^2) e (e per answer), so each
  model keeps its profile's length distribution; rho (`length`) ties long answers to hard
  questions, s (`shared`) makes some questions long for every model whatever their difficulty.
* wrong answers: a share (`distractor_share`) falls on one distractor per question, the rest
  uniformly on the wrong options, so two wrong experts agree with probability d^2 + (1 - d^2) / k.
* category: lengths are scaled by the question's category factor (`category_length`), so a
  dataset's long subjects (MMLU-Pro chemistry) are long for every model; the workload normalises
  it over the questions each model serves, so the model's mean per prompt stays its profile's.

The values are measured on real traces by experiments/fit_difficulty.py (mosaic.workload.
difficulty_fit) and stored per dataset in the profile set's `datasets` section; a workload's
`difficulty_accuracy`, `difficulty_length`, `length_shared` and `distractor_share` override them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
from scipy import optimize
from scipy.special import expit, logit

from mosaic.core.errors import ConfigError

# Quadrature over z ~ N(0, 1) (probabilists' Gauss-Hermite): exact enough for smooth integrands.
_Z, _W = np.polynomial.hermite_e.hermegauss(41)
_W = _W / _W.sum()
# Above this discrimination expit(b - a z) is too steep for 41 Gauss-Hermite nodes (at a = 30 the
# marginal came out 0.08 for 0.10 asked), and Gauss-Hermite itself fails beyond ~150 nodes.
_HERMITE_MAX_A = 5.0


def _nodes(a: float) -> tuple[np.ndarray, np.ndarray]:
    """Quadrature of a standard normal for E_z[expit(b - a z)]: Gauss-Hermite up to
    _HERMITE_MAX_A, else an even grid over +-9 fine enough for the logistic's width 1/a."""
    if abs(a) <= _HERMITE_MAX_A:
        return _Z, _W
    step = min(0.05, 0.2 / abs(a))
    z = np.arange(-9.0, 9.0 + step / 2, step)
    w = np.exp(-z * z / 2)
    return z, w / w.sum()


@dataclass(frozen=True)
class DifficultyModel:
    accuracy: float = 1.2          # a: logit drop in P(correct) per unit of difficulty
    length: float = 0.6            # rho: copula loading of output length on difficulty
    shared: float = 0.0            # s: copula loading of output length on the question's verbosity
    distractor_share: float = 0.6  # wrong answers that fall on the question's one main distractor
    category_length: Mapping[str, float] = field(default_factory=dict)   # category -> length factor
    sources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not (np.isfinite(self.accuracy) and self.accuracy >= 0):
            raise ConfigError(f"workload.difficulty_accuracy must be a finite number >= 0 (got {self.accuracy})")
        if not -1.0 < self.length < 1.0:
            raise ConfigError(f"workload.difficulty_length is a correlation in (-1, 1) (got {self.length})")
        if not 0.0 <= self.shared < 1.0:
            raise ConfigError(f"workload.length_shared is a loading in [0, 1) (got {self.shared})")
        if not 0.0 <= self.distractor_share <= 1.0:
            raise ConfigError(f"workload.distractor_share is a share in [0, 1] (got {self.distractor_share})")
        if self.length ** 2 + self.shared ** 2 >= 1.0:
            raise ConfigError(f"workload: difficulty_length^2 + length_shared^2 must be < 1 (got "
                              f"{self.length}^2 + {self.shared}^2); lower one of them")
        bad = {c: f for c, f in self.category_length.items() if not (np.isfinite(f) and f > 0)}
        if bad:
            raise ConfigError(f"datasets.<dataset>.category_length: factors must be > 0 (got {bad})")

    @property
    def noise(self) -> float:
        return float(np.sqrt(1.0 - self.length ** 2 - self.shared ** 2))

    def length_factors(self, categories) -> np.ndarray:
        """Per question, its category's length factor, normalised to mean 1 over these questions
        (categories the table lacks get 1)."""
        f = np.array([self.category_length.get(c, 1.0) for c in categories], dtype=float)
        return f / f.mean() if len(f) and self.category_length else np.ones(len(f))

    def conditional_logit(self, marginal: np.ndarray) -> np.ndarray:
        """b with E_z[expit(b - a z)] = marginal, elementwise (solved once per distinct value)."""
        p = np.asarray(marginal, dtype=float)
        if np.any((p <= 0) | (p >= 1)):
            raise ConfigError("accuracy tables: every P(correct) must lie strictly between 0 and 1")
        if self.accuracy == 0:
            return logit(p)
        values, inverse = np.unique(p, return_inverse=True)
        z, w = _nodes(self.accuracy)

        def f(b: float, t: float) -> float:
            return float(w @ expit(b - self.accuracy * z)) - t

        # +-60 holds the root for a discrimination of a few logits (and is kept there, so results
        # stay as they were); a larger one needs every node's logit b - a z within +-60
        wide = 60.0 + abs(self.accuracy) * float(np.abs(z).max())
        solved = np.array([optimize.brentq(f, *((-60, 60) if f(-60, t) < 0 < f(60, t) else (-wide, wide)), args=(t,))
                           for t in values])
        return solved[inverse].reshape(p.shape)


def _number(raw: Mapping[str, Any], key: str, where: str) -> float | None:
    if raw.get(key) is None:
        return None
    try:
        return float(raw[key])
    except (TypeError, ValueError):
        raise ConfigError(f"{where}.{key} must be a number (got {raw[key]!r})") from None


def parse_dataset(raw: Any, where: str) -> DifficultyModel:
    """A profile set's `datasets.<name>` entry: difficulty_accuracy, difficulty_length,
    length_shared, category_length {category: factor}, sources."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a mapping with difficulty_accuracy, difficulty_length, ...")
    known = {"difficulty_accuracy", "difficulty_length", "length_shared", "distractor_share", "category_length",
             "sources"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; allowed: {sorted(known)}")
    cats = raw.get("category_length") or {}
    if not isinstance(cats, Mapping):
        raise ConfigError(f"{where}.category_length must map category names to length factors")
    kw = {k: v for k, v in (("accuracy", _number(raw, "difficulty_accuracy", where)),
                            ("length", _number(raw, "difficulty_length", where)),
                            ("shared", _number(raw, "length_shared", where)),
                            ("distractor_share", _number(raw, "distractor_share", where))) if v is not None}
    try:
        return DifficultyModel(**kw, category_length={str(c): float(f) for c, f in cats.items()},
                               sources=tuple(raw.get("sources") or ()))
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}.category_length: {e}") from None


def resolve(base: DifficultyModel | None, accuracy: float | None = None, length: float | None = None,
            shared: float | None = None, distractor_share: float | None = None) -> DifficultyModel:
    """The dataset's measured model (or the built-in default), with any workload override applied."""
    base = base or DifficultyModel()
    pick = lambda override, measured: measured if override is None else float(override)  # noqa: E731
    return DifficultyModel(accuracy=pick(accuracy, base.accuracy), length=pick(length, base.length),
                           shared=pick(shared, base.shared),
                           distractor_share=pick(distractor_share, base.distractor_share),
                           category_length=base.category_length, sources=base.sources)
