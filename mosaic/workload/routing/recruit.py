"""Recruitment: which k experts answer each question (workload.routing, workload.replacement).

* `recruit` (routing=router, replacement=true; the default) is Symbolic-MoE's recruiter, the one
  the paper's workloads were routed with (github.com/dinobby/Symbolic-MoE: recruit_agents.py
  `recruit_agents` and `normalize_to_probability`, agent.py `SkillEvaluator.create_profile`).
  There an expert's profile scores each skill keyword +1 per correct and -1 per wrong calibration
  answer. A question's local score per expert sums its keywords' scores; only experts with a
  positive local score are candidates (when none is, all are, shifted so the lowest scores 1).
  A candidate's weight is its local score times a global strength: the expert's total profile
  score, shifted to start at 1 if any is negative, squared (temperature 0.5) and normalised.
  Finally `random.choices(models, weights, k=3)` draws k experts WITH replacement, so a question
  can recruit the same expert two or three times (DESIGN.md: Table 3 needs it). Our skills are per
  category, not per keyword, so the local score is the category's net calibration score
  n_c (2a - 1) (a: the expert's accuracy there as the router estimates it, n_c: the calibration
  questions behind that estimate) and the global score n (2A - 1) over all n calibration questions.
* `top_k` (routing=router, replacement=false): the k distinct experts with the highest noisy
  logit-skill (Gumbel-top-k: sampling without replacement, weighted by skill).
* `table3` (routing=paper_table3): the paper's per-expert slot counts (Table 3, seed 0) exactly,
  with skill-driven, seeded per-question assignments, to tell "our router differs" apart from
  "our scheduler differs".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.special import logit

from mosaic.core.errors import ConfigError
from mosaic.config.schema import ROUTINGS

# Slots per expert at seed 0: MOSAIC paper (arXiv 2606.03014v1) Table 3, as restated in
# DESIGN.md ("The paper's setting"). Sums: 6,300 = 2,100 x 3; 12,549 = 4,183 x 3; 594 = 198 x 3.
PAPER_TABLE3: dict[str, dict[str, int]] = {
    "mmlu_pro": {"LlamaR1": 1070, "QwenR1": 1428, "Gemma": 1632, "Exaone": 547, "GLM": 667, "Qwen": 956},
    "medmcqa": {"LlamaR1": 620, "QwenR1": 144, "Gemma": 4195, "Exaone": 625, "GLM": 1283, "Qwen": 5682},
    "gpqa": {"LlamaR1": 429, "QwenR1": 158, "Gemma": 4, "Exaone": 3, "GLM": 0, "Qwen": 0},
}


@dataclass(frozen=True)
class RoutingSpec:
    routing: str = "router"      # "router" | "paper_table3"
    replacement: bool = True     # router: draw the k experts with replacement (Symbolic-MoE)
    noise: float = 0.15          # Gumbel scale of the without-replacement router

    def __post_init__(self):
        if self.routing not in ROUTINGS:
            raise ConfigError(f"workload.routing: '{self.routing}' is not one of {list(ROUTINGS)}")
        if not isinstance(self.replacement, (bool, np.bool_)):
            raise ConfigError(f"workload.replacement must be true or false (got {self.replacement!r})")
        if self.routing == "paper_table3" and not self.replacement:
            raise ConfigError("workload.routing=paper_table3 draws with replacement (Table 3 cannot be "
                              "reached otherwise); set workload.replacement=true")


@dataclass(frozen=True)
class Calibration:
    """What the router knows beyond per-question skills: the experts' dataset-wide calibration
    accuracy, the calibration set's size, and per question how many calibration questions its
    skill estimate rests on."""

    overall: np.ndarray     # (experts,) accuracy over the whole calibration set
    n: int                  # calibration questions
    support: np.ndarray     # (questions,) calibration questions behind each row's skills


def recruit_probabilities(skill: np.ndarray, cal: Calibration) -> np.ndarray:
    """Symbolic-MoE's per-question recruitment distribution (see the module docstring)."""
    skill = np.asarray(skill, dtype=float)
    local = np.asarray(cal.support, dtype=float)[:, None] * (2 * skill - 1)
    positive = local > 0
    shifted = local - local.min(axis=1, keepdims=True) + 1
    base = np.where(positive.any(axis=1, keepdims=True), np.where(positive, local, 0.0), shifted)
    strength = cal.n * (2 * np.asarray(cal.overall, dtype=float) - 1)
    if strength.min() < 0:
        strength = strength - strength.min() + 1
    strength = strength ** 2
    w = base * (strength / strength.sum())[None, :]
    return w / w.sum(axis=1, keepdims=True)


def draw(p: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k independent draws per row from the row's distribution (random.choices): (rows x k)."""
    cdf = np.cumsum(p, axis=1)
    cdf /= cdf[:, -1:]
    cdf[cdf > 1 - 1e-12] = 1.0  # zero-probability experts past the last likely one stay unreachable
    u = rng.random((p.shape[0], k))
    return (cdf[:, None, :] <= u[:, :, None]).sum(axis=2)


def recruit(skill: np.ndarray, k: int, cal: Calibration, rng: np.random.Generator) -> np.ndarray:
    return draw(recruit_probabilities(skill, cal), k, rng)


def top_k(skill: np.ndarray, k: int, noise: float, rng: np.random.Generator) -> np.ndarray:
    """Per query, the k experts with the highest noisy logit-skill (without replacement)."""
    scores = logit(np.clip(skill, 1e-6, 1 - 1e-6)) + noise * rng.gumbel(size=skill.shape)
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


# ---------------------------------------------------------------- Table 3 routing

def table3_targets(dataset: str, experts: Sequence[str], n_queries: int, k: int) -> np.ndarray:
    """Table 3's slot counts in `experts` order. A workload of another size (n_queries x k slots)
    gets the counts scaled by largest remainder, so the shares stay the paper's."""
    if dataset not in PAPER_TABLE3:
        raise ConfigError(f"workload.routing=paper_table3: Table 3 covers {sorted(PAPER_TABLE3)}, not "
                          f"'{dataset}'; use workload.routing=router")
    table = PAPER_TABLE3[dataset]
    if sorted(experts) != sorted(table):
        raise ConfigError(f"workload.routing=paper_table3 needs the paper's six experts {sorted(table)}; "
                          f"this workload has {sorted(experts)}; use workload.routing=router")
    counts = np.array([table[e] for e in experts], dtype=float)
    slots = n_queries * k
    if slots == counts.sum():
        return counts.astype(int)
    exact = counts * slots / counts.sum()
    out = np.floor(exact).astype(int)
    order = np.argsort(-(exact - out), kind="stable")
    out[order[: slots - out.sum()]] += 1
    return out


def fit_multipliers(base: np.ndarray, targets: np.ndarray, k: int, iters: int = 2000) -> np.ndarray:
    """Per-expert multipliers w such that drawing k slots per question from p[q] ~ base[q] * w
    gives each expert its target count in expectation (iterative proportional fitting)."""
    w = (targets > 0).astype(float)
    for _ in range(iters):
        p = base * w
        p /= p.sum(axis=1, keepdims=True)
        expected = k * p.sum(axis=0)
        if np.abs(expected - targets).max() < 1e-6:
            break
        w = np.where(targets > 0, w * targets / np.maximum(expected, 1e-300), 0.0)
        w /= w.max()
    return w


def repair(chosen: np.ndarray, p: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """The fewest slot moves that hit `targets` exactly: each move takes a slot from an expert over
    its target to one under it, choosing the slot and receiver whose probability ratio
    p[q, receiver] / p[q, donor] is highest (deterministic: ties go to the first)."""
    chosen = chosen.copy()
    n, k = chosen.shape
    with np.errstate(divide="ignore"):
        logp = np.log(p)
    rows = np.repeat(np.arange(n), k)
    counts = np.bincount(chosen.ravel(), minlength=p.shape[1])
    while True:
        surplus = counts - targets
        if not surplus.any():
            return chosen
        receivers = np.flatnonzero(surplus < 0)
        flat = chosen.ravel()
        slots = np.flatnonzero(surplus[flat] > 0)
        gain = logp[rows[slots]][:, receivers] - logp[rows[slots], flat[slots]][:, None]
        s, r = np.unravel_index(np.argmax(gain), gain.shape)
        slot, to = slots[s], receivers[r]
        counts[flat[slot]] -= 1
        counts[to] += 1
        chosen[slot // k, slot % k] = to


def table3(skill: np.ndarray, k: int, targets: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """k slots per question with replacement, skill-driven and seeded, per-expert totals = targets.

    An expert's odds on a question are its (router-estimated) accuracy there times a per-expert
    multiplier fitted so expected counts equal the targets; a seeded draw then lands within
    sampling noise of them, and `repair` moves the few surplus slots to where they fit best."""
    if targets.sum() != skill.shape[0] * k:
        raise ConfigError(f"workload.routing=paper_table3: {targets.sum()} target slots for "
                          f"{skill.shape[0]} questions x k={k}")
    base = np.clip(np.asarray(skill, dtype=float), 1e-6, None)
    w = fit_multipliers(base, targets, k)
    p = base * w
    p /= p.sum(axis=1, keepdims=True)
    return repair(draw(p, k, rng), p, targets)


def route(spec: RoutingSpec, skill: np.ndarray, k: int, rng: np.random.Generator, cal: Calibration,
          experts: Sequence[str], dataset: str) -> np.ndarray:
    """(questions x k) expert indices into `experts`, in draw order."""
    if k < 1:
        raise ConfigError(f"workload.k must be >= 1 (got {k})")
    if spec.routing == "paper_table3":
        return table3(skill, k, table3_targets(dataset, experts, skill.shape[0], k), rng)
    if not spec.replacement:
        if k > len(experts):
            raise ConfigError(f"workload.k={k} exceeds the {len(experts)} experts; drawing without "
                              "replacement needs k <= experts (or set workload.replacement=true)")
        return top_k(skill, k, spec.noise, rng)
    return recruit(skill, k, cal, rng)


def routing_spec(cfg) -> RoutingSpec:
    """The routing fields of a workload config section."""
    return RoutingSpec(str(cfg.get("routing", "router")), cfg.get("replacement", True),
                       float(cfg.get("routing_noise", 0.15)))
