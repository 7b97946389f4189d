"""Synthetic MoA workload calibrated from the paper's workload statistics (never its results).

Each query has a category and a latent difficulty z ~ N(0, 1). Hard queries are answered wrongly
by more experts at once (correlated errors, so experts sometimes agree and sometimes not) and make
every model write longer outputs (so unanimous queries are the short ones, as the paper measured).
Routing is skill-based in the style of Symbolic-MoE: per category, each expert has a skill (its
accuracy there); each query takes the k experts with the highest noisy skill, so demand is skewed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special
from scipy.special import expit, logit

from mosaic.errors import ConfigError
from mosaic.profiles import ProfileSet
from mosaic.workload.types import Outcome, Query, Workload, aggregator_request_id, expert_request_id

EXPERTS = ("LlamaR1", "QwenR1", "Gemma", "Exaone", "GLM", "Qwen")


@dataclass(frozen=True)
class Preset:
    name: str
    n_queries: int
    categories: tuple[str, ...]
    n_options: int
    aggregator: str
    prompt_median_tokens: float
    base_accuracy: dict[str, float]   # per expert, averaged over categories
    aggregator_accuracy: float
    table_seed: int                   # fixes the per-category skill table: a property of the dataset


_MMLU_CATS = ("biology", "business", "chemistry", "computer science", "economics", "engineering",
              "health", "history", "law", "math", "other", "philosophy", "physics", "psychology")
_MED_CATS = ("anatomy", "biochemistry", "medicine", "microbiology", "pathology", "pharmacology",
             "physiology", "surgery", "pediatrics", "gynaecology")
_GPQA_CATS = ("biology", "chemistry", "physics")

# Question sizes: MMLU-Pro 2100 (14 categories, 10 options), MedMCQA 4183, GPQA 198 (4 options);
# aggregators MMLU-Pro LlamaR1, MedMCQA Exaone, GPQA QwenR1 (DESIGN.md). Accuracies are typical
# published 7-9B scores on these benchmarks; reasoning distills are strongest on STEM-heavy sets.
PRESETS: dict[str, Preset] = {
    "mmlu_pro": Preset("mmlu_pro", 2100, _MMLU_CATS, 10, "LlamaR1", 260.0,
                       {"LlamaR1": 0.55, "QwenR1": 0.52, "Gemma": 0.50, "Exaone": 0.46,
                        "GLM": 0.45, "Qwen": 0.56}, 0.60, 11),
    "medmcqa": Preset("medmcqa", 4183, _MED_CATS, 4, "Exaone", 120.0,
                      {"LlamaR1": 0.55, "QwenR1": 0.42, "Gemma": 0.58, "Exaone": 0.56,
                       "GLM": 0.55, "Qwen": 0.57}, 0.60, 12),
    "gpqa": Preset("gpqa", 198, _GPQA_CATS, 4, "QwenR1", 300.0,
                   {"LlamaR1": 0.45, "QwenR1": 0.44, "Gemma": 0.34, "Exaone": 0.33,
                    "GLM": 0.31, "Qwen": 0.36}, 0.48, 13),
}


@dataclass(frozen=True)
class SyntheticSpec:
    preset: str = "mmlu_pro"
    n_queries: int | None = None        # None: the preset's dataset size
    k: int = 3                          # experts per query
    skill_spread: float = 0.4           # per-category skill deviation, logit scale
    routing_noise: float = 0.15         # Gumbel noise scale on skills when routing
    difficulty_accuracy: float = 1.2    # logit drop in P(correct) per unit of difficulty
    difficulty_length: float = 0.6      # Gaussian-copula correlation of output length with difficulty
    distractor_share: float = 0.6       # wrong answers that fall on the query's main distractor
    aggregator_follow: float = 0.8      # logit gain of the aggregator per extra correct expert


def skill_table(preset: Preset, spread: float) -> np.ndarray:
    """accuracy[category, expert]: the dataset's per-category expert skill (fixed per preset)."""
    rng = np.random.default_rng(preset.table_seed)
    base = logit(np.array([preset.base_accuracy[e] for e in EXPERTS]))
    dev = rng.normal(0.0, spread, size=(len(preset.categories), len(EXPERTS)))
    return expit(base[None, :] + dev - dev.mean(axis=0, keepdims=True))


def generate(spec: SyntheticSpec, profiles: ProfileSet, seed: int) -> Workload:
    if spec.preset not in PRESETS:
        raise ConfigError(f"workload.preset: unknown preset '{spec.preset}'; choose one of {sorted(PRESETS)}")
    preset = PRESETS[spec.preset]
    n = preset.n_queries if spec.n_queries is None else spec.n_queries
    if n < 1:
        raise ConfigError(f"workload.n_queries must be >= 1 (got {n})")
    if not 1 <= spec.k <= len(EXPERTS):
        raise ConfigError(f"workload.k must be between 1 and {len(EXPERTS)} (got {spec.k})")
    for m in (*EXPERTS, preset.aggregator):
        profiles.model(m)  # clear error if the profile set lacks a model

    rng = np.random.default_rng(seed)
    acc = skill_table(preset, spec.skill_spread)
    letters = tuple("ABCDEFGHIJ"[: preset.n_options])
    max_len = profiles.engine.max_model_len

    cat = rng.integers(0, len(preset.categories), size=n)
    z = rng.normal(size=n)
    prompt = np.clip(np.rint(rng.lognormal(np.log(preset.prompt_median_tokens), 0.4, size=n)), 16, 4096)
    gold = rng.integers(0, preset.n_options, size=n)
    distractor = (gold + rng.integers(1, preset.n_options, size=n)) % preset.n_options
    # Gumbel-top-k on noisy logit-skill = sampling k experts without replacement, skill-weighted.
    scores = logit(acc[cat]) + spec.routing_noise * rng.gumbel(size=(n, len(EXPERTS)))
    chosen = np.argsort(-scores, axis=1, kind="stable")[:, : spec.k]
    # Lengths follow each model's profile distribution exactly; a Gaussian copula on difficulty
    # makes hard queries long without distorting that marginal.
    rho = spec.difficulty_length
    if not -1.0 < rho < 1.0:
        raise ConfigError(f"workload.difficulty_length is a correlation in (-1, 1) (got {rho})")

    def lengths(model: str) -> np.ndarray:
        latent = rho * z + np.sqrt(1 - rho * rho) * rng.normal(size=n)
        return profiles.model(model).output.ppf(special.ndtr(latent))

    def wrong_answer(i: int) -> int:
        if rng.random() < spec.distractor_share:
            return int(distractor[i])
        return int((gold[i] + rng.integers(1, preset.n_options)) % preset.n_options)

    # Draw lengths per model in one vectorised call, then hand them out in query order.
    draws = {m: lengths(m) for m in EXPERTS}
    agg_draws = lengths(preset.aggregator)
    queries, outcomes = [], {}
    for i in range(n):
        qid = f"{preset.name}-{i:05d}"
        experts = tuple(EXPERTS[j] for j in chosen[i])
        n_correct = 0
        for j in chosen[i]:
            m = EXPERTS[j]
            p = expit(logit(acc[cat[i], j]) - spec.difficulty_accuracy * z[i])
            correct = rng.random() < p
            n_correct += correct
            ans = int(gold[i]) if correct else wrong_answer(i)
            out = min(int(draws[m][i]), max_len - int(prompt[i]))
            outcomes[expert_request_id(qid, m)] = Outcome(out, letters[ans])
        # The aggregator reads the experts' answers: more correct experts, likelier it is right.
        a_idx = EXPERTS.index(preset.aggregator)
        p_agg = expit(logit(preset.aggregator_accuracy) + logit(acc[cat[i], a_idx]) - logit(
            preset.base_accuracy[preset.aggregator]) - spec.difficulty_accuracy * z[i]
            + spec.aggregator_follow * (n_correct - spec.k / 2))
        agg_ans = int(gold[i]) if rng.random() < p_agg else wrong_answer(i)
        agg_out = min(int(agg_draws[i]), max_len // 2)
        outcomes[aggregator_request_id(qid)] = Outcome(agg_out, letters[agg_ans])
        queries.append(Query(qid, preset.categories[cat[i]], int(prompt[i]), letters[gold[i]],
                             experts, float(z[i])))
    return Workload(name=f"synthetic_{preset.name}", seed=seed, queries=tuple(queries),
                    expert_models=EXPERTS, aggregator=preset.aggregator, outcomes=outcomes,
                    options=letters)

