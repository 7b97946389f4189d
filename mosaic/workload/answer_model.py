"""The answer model of the modelled workloads (synthetic and real-question): who answers what, how long.

Each query has a category and a latent difficulty z ~ N(0, 1). Hard queries are answered wrongly
by more experts at once (correlated errors, so experts sometimes agree and sometimes not) and make
every model write longer outputs (so unanimous queries are the short ones, as the paper measured);
how strongly is measured on real traces per dataset (mosaic/profiles/difficulty.py). The dataset
presets (sizes, categories, accuracy levels) and the settings both sources share live here too.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special
from scipy.special import expit, logit

from mosaic.core.errors import ConfigError
from mosaic.profiles import ProfileSet
from mosaic.workload.routing import recruit as routing
from mosaic.profiles.difficulty import DifficultyModel, resolve
from mosaic.workload.types import (Outcome, Query, Workload, aggregator_request_id, expert_request_id,
                                   expert_slots)
from mosaic.config.schema import COUPLINGS

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
    calibration_size: int             # the dataset's calibration (train) questions, the router's evidence
    integer_answers: bool = False     # answers are integers 0..n_options-1 (AIME), not option letters


_MMLU_CATS = ("biology", "business", "chemistry", "computer science", "economics", "engineering",
              "health", "history", "law", "math", "other", "philosophy", "physics", "psychology")
_MED_CATS = ("anatomy", "biochemistry", "medicine", "microbiology", "pathology", "pharmacology",
             "physiology", "surgery", "pediatrics", "gynaecology")
_GPQA_CATS = ("biology", "chemistry", "physics")

# Question sizes: MMLU-Pro 2100 (14 categories, 10 options), MedMCQA 4183, GPQA 198 (4 options);
# aggregators MMLU-Pro LlamaR1, MedMCQA Exaone, GPQA QwenR1 (DESIGN.md). Accuracies are typical
# published 7-9B scores on these benchmarks; reasoning distills are strongest on STEM-heavy sets.
# Calibration sizes are the train files' (../shared/data/README.md: 350, 504, 249, 354).
#
# AIME24 (30 questions, integer answers 0-999; aggregator QwenR1, Symbolic-MoE README's table).
# Accuracies are published AIME 2024 pass@1 figures: R1-Distill-Llama-8B 50.4 and
# R1-Distill-Qwen-7B 55.5 (DeepSeek-R1 paper, arXiv 2501.12948, Table 5); Qwen2.5-7B-Instruct 10.0
# (alibaba-pai DistilQwen2.5 model cards' baseline table). For gemma-2-9b-it, EXAONE-3.5-7.8B-Instruct
# and glm-4-9b-chat no published AIME 2024 figure was found: 0.05 is an ASSUMPTION (half of
# Qwen2.5-7B-Instruct's, as their published MATH scores are well below its 75.5). The aggregator's
# level is QwenR1's own pass@1, also an assumption (Symbolic-MoE's aggregated AIME score not used).
PRESETS: dict[str, Preset] = {
    "mmlu_pro": Preset("mmlu_pro", 2100, _MMLU_CATS, 10, "LlamaR1", 260.0,
                       {"LlamaR1": 0.55, "QwenR1": 0.52, "Gemma": 0.50, "Exaone": 0.46,
                        "GLM": 0.45, "Qwen": 0.56}, 0.60, 11, 350),
    "medmcqa": Preset("medmcqa", 4183, _MED_CATS, 4, "Exaone", 120.0,
                      {"LlamaR1": 0.55, "QwenR1": 0.42, "Gemma": 0.58, "Exaone": 0.56,
                       "GLM": 0.55, "Qwen": 0.57}, 0.60, 12, 504),
    "gpqa": Preset("gpqa", 198, _GPQA_CATS, 4, "QwenR1", 300.0,
                   {"LlamaR1": 0.45, "QwenR1": 0.44, "Gemma": 0.34, "Exaone": 0.33,
                    "GLM": 0.31, "Qwen": 0.36}, 0.48, 13, 249),
    "aime24": Preset("aime24", 30, ("all",), 1000, "QwenR1", 150.0,
                     {"LlamaR1": 0.504, "QwenR1": 0.555, "Gemma": 0.05, "Exaone": 0.05,
                      "GLM": 0.05, "Qwen": 0.10}, 0.555, 14, 354, integer_answers=True),
}


@dataclass(frozen=True)
class SyntheticSpec:
    preset: str = "mmlu_pro"
    n_queries: int | None = None        # None: the preset's dataset size
    k: int = 3                          # experts per query
    skill_spread: float = 0.4           # per-category skill deviation, logit scale
    routing_noise: float = 0.15         # Gumbel noise scale on skills (replacement=false only)
    routing: str = "router"             # "router" | "paper_table3" (routing.py)
    replacement: bool = True            # recruit with replacement, as Symbolic-MoE does
    # The answer model's coupling (mosaic/profiles/difficulty.py); None: the profile set's measured
    # value for the dataset (its `datasets` section), else the built-in default.
    coupling: str = "measured"                 # "measured": the profile's `datasets` entry | "assumed": built-in
    difficulty_accuracy: float | None = None   # IRT discrimination: logit drop per unit of difficulty
    difficulty_length: float | None = None     # copula loading of output length on difficulty
    length_shared: float | None = None         # copula loading of output length on question verbosity
    distractor_share: float | None = None      # wrong answers that fall on the query's main distractor
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
    integer_answers: bool = False          # answers are str(int) (AIME), else option letters

    def __len__(self) -> int:
        return len(self.ids)

    def label(self, answer: int) -> str:
        return str(answer) if self.integer_answers else LETTERS[answer]


LETTERS = "ABCDEFGHIJKLMNOP"


def simulate(frame: QuestionFrame, experts: tuple[str, ...], accuracy: np.ndarray, chosen: np.ndarray,
             aggregator: str, aggregator_logit: np.ndarray, spec: SyntheticSpec, profiles: ProfileSet,
             rng: np.random.Generator, name: str, seed: int, dataset: str | None = None) -> Workload:
    """Answers and output lengths for every routed (query, expert) pair and for the aggregator.

    accuracy: (queries x experts) true P(correct), averaged over difficulty; aggregator_logit: per
    query, the logit of the aggregator's P(correct) with an even expert vote, likewise averaged.
    How difficulty couples answers and lengths: mosaic/profiles/difficulty.py."""
    n = len(frame)
    model = difficulty_model(spec, profiles, dataset)
    if np.any(frame.n_options < 2):
        raise ConfigError("workload: every question needs at least 2 options")
    engine = profiles.engine
    z = rng.normal(size=n)
    verbosity = rng.normal(size=n)
    factor = model.length_factors(frame.categories)
    # Accuracy tables hold marginal P(correct) (averaged over questions); the IRT needs the logit at
    # average difficulty that gives that marginal.
    acc = np.asarray(accuracy, dtype=float)
    if spec.skill_spread > 0 and np.any((acc <= 0) | (acc >= 1)):
        # The profiles' tables are checked strictly inside (0, 1) when loaded: a wide per-category
        # skill spread is what pushed a probability to 0 or 1 in floating point.
        raise ConfigError(f"workload.skill_spread={spec.skill_spread}: per-category skill deviations this wide "
                          "push some expert's P(correct) to exactly 0 or 1; use a spread of a few logits at most "
                          "(default 0.4)")
    b_expert = model.conditional_logit(accuracy)
    b_aggregator = model.conditional_logit(expit(aggregator_logit))
    gold, n_opt = frame.gold, frame.n_options
    distractor = (gold + rng.integers(1, n_opt)) % n_opt

    # Lengths follow each model's profile distribution (then the category's factor); a Gaussian
    # copula on difficulty and verbosity makes hard and wordy queries long without distorting that
    # marginal. `samples` rows are independent draws given the question: a model recruited twice
    # for a query writes two different lengths.
    # The category factor is normalised over the questions the model serves: a profile's mean is
    # the model's mean per prompt it served (the paper's Fig. 1 means are), whichever they were.
    def lengths(name: str, samples: int = 1, slots: np.ndarray | None = None) -> np.ndarray:
        latent = model.length * z + model.shared * verbosity + model.noise * rng.normal(size=(samples, n))
        scale = factor / (np.average(factor, weights=slots) if slots is not None and slots.any() else 1.0)
        return profiles.model(name).output_for(dataset).ppf(special.ndtr(latent)) * scale  # per-dataset lengths

    def wrong_answer(i: int) -> int:
        if rng.random() < model.distractor_share:
            return int(distractor[i])
        return int((gold[i] + rng.integers(1, n_opt[i])) % n_opt[i])

    # One length row per sample of a model within a query, as many as the most repeated expert
    # needs: routing without repeats draws exactly what it drew before repeats existed.
    repeats = max((int((chosen == j).sum(axis=1).max()) for j in range(len(experts))), default=1)
    draws = {m: lengths(m, max(repeats, 1), (chosen == j).sum(axis=1)) for j, m in enumerate(experts)}
    agg_draws = lengths(aggregator)[0]
    queries, outcomes = [], {}
    for i in range(n):
        qid = frame.ids[i]
        models = tuple(experts[j] for j in chosen[i])
        n_correct = 0
        # Each slot is its own sample: a repeated expert answers (and is right) independently.
        for j, (m, sample) in zip(chosen[i], expert_slots(models)):
            p = expit(b_expert[i, j] - model.accuracy * z[i])
            correct = rng.random() < p
            n_correct += correct
            ans = int(gold[i]) if correct else wrong_answer(i)
            out = min(int(draws[m][sample - 1, i]), engine.output_room(int(frame.prompt_tokens[i])))
            outcomes[expert_request_id(qid, m, sample)] = Outcome(out, frame.label(ans))
        # The aggregator reads the experts' answers: more correct experts, likelier it is right.
        p_agg = expit(b_aggregator[i] - model.accuracy * z[i]
                      + spec.aggregator_follow * (n_correct - len(chosen[i]) / 2))
        agg_ans = int(gold[i]) if rng.random() < p_agg else wrong_answer(i)
        outcomes[aggregator_request_id(qid)] = Outcome(min(int(agg_draws[i]), engine.aggregator_cap), frame.label(agg_ans))
        queries.append(Query(qid, frame.categories[i], int(frame.prompt_tokens[i]), frame.label(int(gold[i])),
                             models, float(z[i]), frame.texts[i] if frame.texts else None))
    options = () if frame.integer_answers else tuple(LETTERS[: int(n_opt.max())])
    return Workload(name=name, seed=seed, queries=tuple(queries), expert_models=experts,
                    aggregator=aggregator, outcomes=outcomes, options=options)




def difficulty_model(spec: SyntheticSpec, profiles: ProfileSet, dataset: str | None) -> DifficultyModel:
    """The dataset's measured coupling from the profiles (or the built-in assumed one, with
    coupling=assumed: what the modelled workloads used before it was measured), with the
    workload's overrides."""
    if spec.coupling not in COUPLINGS:
        raise ConfigError(f"workload.coupling: '{spec.coupling}' is not one of {list(COUPLINGS)}; 'measured' uses the "
                          "profile set's per-dataset fit (experiments/fit_difficulty.py), 'assumed' the built-in values")
    measured = spec.coupling == "measured" and dataset is not None
    return resolve(profiles.datasets.get(dataset) if measured else None,
                   spec.difficulty_accuracy, spec.difficulty_length, spec.length_shared, spec.distractor_share)


def check_spec(spec: SyntheticSpec, profiles: ProfileSet, models, dataset: str | None = None) -> None:
    if not 1 <= spec.k <= len(EXPERTS):
        raise ConfigError(f"workload.k must be between 1 and {len(EXPERTS)} (got {spec.k})")
    routing_spec(spec)  # clear error on a bad routing / replacement before any work
    difficulty_model(spec, profiles, dataset)  # and on a bad difficulty coupling
    for m in models:
        profiles.model(m)  # clear error if the profile set lacks a model


def aggregator_logits(preset: Preset, accuracy: np.ndarray, level: float | None = None) -> np.ndarray:
    """The aggregator's accuracy moves with its own per-category skill around the preset's level.

    level: the aggregator model's overall accuracy the per-category skill deviates from (default:
    the preset's); pass the level of whatever table `accuracy` came from."""
    a = EXPERTS.index(preset.aggregator)
    level = preset.base_accuracy[preset.aggregator] if level is None else level
    return logit(preset.aggregator_accuracy) + logit(accuracy[:, a]) - logit(level)


def routing_spec(spec: SyntheticSpec) -> routing.RoutingSpec:
    return routing.RoutingSpec(spec.routing, spec.replacement, spec.routing_noise)
