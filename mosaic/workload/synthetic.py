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
from mosaic.workload.registry import register_kind
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


@dataclass(frozen=True)
class QuestionFrame:
    """What is known of the questions before any model runs, one entry per query."""

    ids: tuple[str, ...]
    categories: tuple[str, ...]
    prompt_tokens: np.ndarray   # int
    gold: np.ndarray            # option index
    n_options: np.ndarray       # int, >= 2
    texts: tuple[str, ...] | None = None   # question texts, where the workload has them

    def __len__(self) -> int:
        return len(self.ids)


def route(skill: np.ndarray, k: int, noise: float, rng: np.random.Generator) -> np.ndarray:
    """Skill-based routing: per query, the k experts with the highest noisy logit-skill.

    Gumbel-top-k on logit-skill is sampling k experts without replacement, weighted by skill;
    `skill` is (queries x experts) accuracy as the router believes it."""
    scores = logit(np.clip(skill, 1e-6, 1 - 1e-6)) + noise * rng.gumbel(size=skill.shape)
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def simulate(frame: QuestionFrame, experts: tuple[str, ...], accuracy: np.ndarray, chosen: np.ndarray,
             aggregator: str, aggregator_logit: np.ndarray, spec: SyntheticSpec, profiles: ProfileSet,
             rng: np.random.Generator, name: str, seed: int) -> Workload:
    """Answers and output lengths for every routed (query, expert) pair and for the aggregator.

    accuracy: (queries x experts) true P(correct) at average difficulty; aggregator_logit: per
    query, the aggregator's logit P(correct) at average difficulty with an even expert vote."""
    n = len(frame)
    rho = spec.difficulty_length
    if not -1.0 < rho < 1.0:
        raise ConfigError(f"workload.difficulty_length is a correlation in (-1, 1) (got {rho})")
    if np.any(frame.n_options < 2):
        raise ConfigError("workload: every question needs at least 2 options")
    max_len = profiles.engine.max_model_len
    z = rng.normal(size=n)
    gold, n_opt = frame.gold, frame.n_options
    distractor = (gold + rng.integers(1, n_opt)) % n_opt
    letters = "ABCDEFGHIJKLMNOP"

    # Lengths follow each model's profile distribution exactly; a Gaussian copula on difficulty
    # makes hard queries long without distorting that marginal.
    def lengths(model: str) -> np.ndarray:
        latent = rho * z + np.sqrt(1 - rho * rho) * rng.normal(size=n)
        return profiles.model(model).output.ppf(special.ndtr(latent))

    def wrong_answer(i: int) -> int:
        if rng.random() < spec.distractor_share:
            return int(distractor[i])
        return int((gold[i] + rng.integers(1, n_opt[i])) % n_opt[i])

    draws = {m: lengths(m) for m in experts}
    agg_draws = lengths(aggregator)
    queries, outcomes = [], {}
    for i in range(n):
        qid = frame.ids[i]
        n_correct = 0
        for j in chosen[i]:
            m = experts[j]
            p = expit(logit(accuracy[i, j]) - spec.difficulty_accuracy * z[i])
            correct = rng.random() < p
            n_correct += correct
            ans = int(gold[i]) if correct else wrong_answer(i)
            out = min(int(draws[m][i]), max_len - int(frame.prompt_tokens[i]))
            outcomes[expert_request_id(qid, m)] = Outcome(out, letters[ans])
        # The aggregator reads the experts' answers: more correct experts, likelier it is right.
        p_agg = expit(aggregator_logit[i] - spec.difficulty_accuracy * z[i]
                      + spec.aggregator_follow * (n_correct - len(chosen[i]) / 2))
        agg_ans = int(gold[i]) if rng.random() < p_agg else wrong_answer(i)
        outcomes[aggregator_request_id(qid)] = Outcome(min(int(agg_draws[i]), max_len // 2), letters[agg_ans])
        queries.append(Query(qid, frame.categories[i], int(frame.prompt_tokens[i]), letters[gold[i]],
                             tuple(experts[j] for j in chosen[i]), float(z[i]),
                             frame.texts[i] if frame.texts else None))
    return Workload(name=name, seed=seed, queries=tuple(queries), expert_models=experts,
                    aggregator=aggregator, outcomes=outcomes, options=tuple(letters[: int(n_opt.max())]))


def check_spec(spec: SyntheticSpec, profiles: ProfileSet, models) -> None:
    if not 1 <= spec.k <= len(EXPERTS):
        raise ConfigError(f"workload.k must be between 1 and {len(EXPERTS)} (got {spec.k})")
    for m in models:
        profiles.model(m)  # clear error if the profile set lacks a model


def aggregator_logits(preset: Preset, accuracy: np.ndarray, level: float | None = None) -> np.ndarray:
    """The aggregator's accuracy moves with its own per-category skill around the preset's level.

    level: the aggregator model's overall accuracy the per-category skill deviates from (default:
    the preset's); pass the level of whatever table `accuracy` came from."""
    a = EXPERTS.index(preset.aggregator)
    level = preset.base_accuracy[preset.aggregator] if level is None else level
    return logit(preset.aggregator_accuracy) + logit(accuracy[:, a]) - logit(level)


def generate(spec: SyntheticSpec, profiles: ProfileSet, seed: int) -> Workload:
    if spec.preset not in PRESETS:
        raise ConfigError(f"workload.preset: unknown preset '{spec.preset}'; choose one of {sorted(PRESETS)}")
    preset = PRESETS[spec.preset]
    n = preset.n_queries if spec.n_queries is None else spec.n_queries
    if n < 1:
        raise ConfigError(f"workload.n_queries must be >= 1 (got {n})")
    check_spec(spec, profiles, (*EXPERTS, preset.aggregator))

    rng = np.random.default_rng(seed)
    table = skill_table(preset, spec.skill_spread)
    cat = rng.integers(0, len(preset.categories), size=n)
    frame = QuestionFrame(
        ids=tuple(f"{preset.name}-{i:05d}" for i in range(n)),
        categories=tuple(preset.categories[c] for c in cat),
        prompt_tokens=np.clip(np.rint(rng.lognormal(np.log(preset.prompt_median_tokens), 0.4, size=n)),
                              16, 4096).astype(int),
        gold=rng.integers(0, preset.n_options, size=n),
        n_options=np.full(n, preset.n_options))
    accuracy = table[cat]
    # The synthetic router knows the true skills; the real-question router estimates them.
    chosen = route(accuracy, spec.k, spec.routing_noise, rng)
    return simulate(frame, EXPERTS, accuracy, chosen, preset.aggregator, aggregator_logits(preset, accuracy),
                    spec, profiles, rng, f"synthetic_{preset.name}", seed)


@register_kind("synthetic")
def build(cfg: dict, profiles: ProfileSet, seed: int) -> Workload:
    return generate(SyntheticSpec(**{k: v for k, v in cfg.items() if k in SyntheticSpec.__dataclass_fields__}),
                    profiles, seed)
