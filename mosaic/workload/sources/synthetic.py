"""Synthetic MoA workload calibrated from the paper's workload statistics (never its results).

Each query has a category and a latent difficulty z ~ N(0, 1). Hard queries are answered wrongly
by more experts at once (correlated errors, so experts sometimes agree and sometimes not) and make
every model write longer outputs (so unanimous queries are the short ones, as the paper measured);
how strongly is measured on real traces per dataset (mosaic/profiles/difficulty.py).
Routing is Symbolic-MoE's skill-based recruiter (mosaic/workload/routing/recruit.py): per category, each
expert has a skill (its accuracy there); each query draws k experts with replacement, weighted by
skill, so demand is skewed and a query can ask the same expert twice (two independent samples).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from mosaic.core.errors import ConfigError
from mosaic.profiles import ProfileSet
from mosaic.workload.routing import recruit as routing
from mosaic.workload.calibration import synthetic_calibration
from mosaic.workload.sources import ANSWER_MODEL, ROUTING, register_source
from mosaic.workload.types import (Workload)

from mosaic.workload.answer_model import (EXPERTS, PRESETS, QuestionFrame, SyntheticSpec, aggregator_logits,
                                         check_spec, routing_spec, simulate, skill_table)


def generate(spec: SyntheticSpec, profiles: ProfileSet, seed: int) -> Workload:
    if spec.preset not in PRESETS:
        raise ConfigError(f"workload.preset: unknown preset '{spec.preset}'; choose one of {sorted(PRESETS)}")
    preset = PRESETS[spec.preset]
    n = preset.n_queries if spec.n_queries is None else spec.n_queries
    if n < 1:
        raise ConfigError(f"workload.n_queries must be >= 1 (got {n})")
    check_spec(spec, profiles, (*EXPERTS, preset.aggregator), preset.name)

    rng = np.random.default_rng(seed)
    table = skill_table(preset, spec.skill_spread)
    cat = rng.integers(0, len(preset.categories), size=n)
    frame = QuestionFrame(
        ids=tuple(f"{preset.name}-{i:05d}" for i in range(n)),
        categories=tuple(preset.categories[c] for c in cat),
        prompt_tokens=np.clip(np.rint(rng.lognormal(np.log(preset.prompt_median_tokens), 0.4, size=n)),
                              16, 4096).astype(int),
        gold=rng.integers(0, preset.n_options, size=n),
        n_options=np.full(n, preset.n_options), integer_answers=preset.integer_answers)
    accuracy = table[cat]
    # The synthetic router knows the true skills, as if measured on the dataset's calibration set
    # split evenly over categories; the real-question router estimates them.
    cal = routing.Calibration(np.array([preset.base_accuracy[e] for e in EXPERTS]), preset.calibration_size,
                              np.full(n, preset.calibration_size / len(preset.categories)))
    chosen = routing.route(routing_spec(spec), accuracy, spec.k, rng, cal, EXPERTS, preset.name)
    workload = simulate(frame, EXPERTS, accuracy, chosen, preset.aggregator, aggregator_logits(preset, accuracy),
                        spec, profiles, rng, f"synthetic_{preset.name}", seed, dataset=preset.name)
    return replace(workload, calibration=synthetic_calibration(
        profiles, (*EXPERTS, preset.aggregator), preset.name, preset.prompt_median_tokens, seed))


@register_source("synthetic", reads=("preset", "n_queries", *ROUTING, *ANSWER_MODEL))
def build(cfg: dict, profiles: ProfileSet, seed: int) -> Workload:
    return generate(SyntheticSpec(**{k: v for k, v in cfg.items() if k in SyntheticSpec.__dataclass_fields__}),
                    profiles, seed)
