"""Skill-based router in the style of Symbolic-MoE, with skills estimated on a calibration set.

Per expert and category, the skill is the expert's accuracy on that category's calibration
questions, shrunk towards the expert's overall calibration accuracy (a Beta prior worth
`prior_strength` questions) so that a category with few calibration questions does not decide
routing on two lucky answers. Routing itself is `recruit.route`.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from mosaic.core.errors import ConfigError


def estimate_skills(categories: Sequence[str], correct: np.ndarray, all_categories: Sequence[str],
                    prior_strength: float = 5.0) -> np.ndarray:
    """correct: (calibration questions x experts) of 0/1 (NaN where an expert has no answer).
    Returns skill[category, expert] for `all_categories` (unseen ones get the overall rate)."""
    correct = np.asarray(correct, dtype=float)
    if correct.ndim != 2 or correct.shape[0] != len(categories):
        raise ConfigError(f"router: {len(categories)} calibration categories but correctness of shape "
                          f"{correct.shape}")
    seen = ~np.isnan(correct)
    if not seen.any(axis=0).all():
        raise ConfigError("router: an expert has no calibration answers at all")
    overall = (np.nansum(correct, axis=0) + 1) / (seen.sum(axis=0) + 2)
    cats = np.asarray(categories)
    skill = np.empty((len(all_categories), correct.shape[1]))
    for i, c in enumerate(all_categories):
        rows = cats == c
        hits = np.nansum(correct[rows], axis=0)
        count = seen[rows].sum(axis=0)
        skill[i] = (hits + prior_strength * overall) / (count + prior_strength)
    return skill
