"""Workloads from the real question sets (MMLU-Pro, MedMCQA, GPQA, AIME24; Symbolic-MoE release format).

Questions, categories, gold letters and prompt lengths are real. Expert answers and output
lengths are modelled as in the synthetic workload (per-category skill, correlated errors, profile
length distributions), because no trace covers the paper's six experts. The router estimates each
expert's per-category skill on the calibration (train) file: the experts "answer" the calibration
questions under the same model, and `router.estimate_skills` turns that into skill scores, which
`routing.route` turns into k recruited experts per question (with replacement by default).

AIME24's answers are integers 0-999, not letters: gold, expert and aggregator answers are integer
strings, wrong answers are other integers, and agreement compares those strings.

The calibration answers are drawn once per dataset (`workload.calibration_seed`), not per run: the
runs' seeds vary the recruiter's draws and the test answers, as re-running Symbolic-MoE would.

The true per-category accuracy comes from the profiles' `accuracy` tables when all six experts'
profiles have one for the dataset (paper_a100.yaml: assumed overall levels, MMLU-Pro's category
spread measured on real traces; see experiments/fit_profiles.py), else from the synthetic preset's
seeded table. The aggregator's per-category skill comes from the same table.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from mosaic.core.errors import ConfigError
from mosaic.profiles import ProfileSet
from mosaic.workload.sources.files import resolve
from mosaic.workload.sources.question_files import gold_option, load_questions
from mosaic.workload.calibration import question_calibration
from mosaic.workload.sources import ANSWER_MODEL, ROUTING, register_source
from mosaic.workload.routing import recruit as routing
from mosaic.workload.routing.skills import estimate_skills
from mosaic.workload.answer_model import (EXPERTS, PRESETS, QuestionFrame, SyntheticSpec, aggregator_logits,
                                       check_spec, routing_spec, simulate, skill_table)
from mosaic.workload.tokens import estimate_tokens
from mosaic.workload.types import Workload, expert_request_id

FILES = {"mmlu_pro": "MMLU_Pro", "medmcqa": "MedMCQA", "gpqa": "GPQA", "aime24": "AIME24"}
# Symbolic-MoE wraps each question in an instruction asking for step-by-step reasoning and a final
# letter; about 40 tokens.
TEMPLATE_TOKENS = 40
# An integer answer, alone or first of "080 or 081 (both were accepted)".
_LEADING_INT = re.compile(r"\s*(\d+)(?:\s*$|\s+or\s+\d+\b)")


def integer_frame(records, dataset: str, split: str, path: Path, n_answers: int) -> QuestionFrame:
    """Questions whose answer is an integer in [0, n_answers) (AIME: 0-999), no options text.

    A gold answer that lists several accepted integers (AIME24_train item 317: "080 or 081 (both
    were accepted)") counts as its first; the model outcome only needs one right answer."""
    gold = []
    for i, rec in enumerate(records):
        g = _LEADING_INT.match(rec["gold_answer"])
        if not (g and int(g.group(1)) < n_answers):
            raise ConfigError(f"{path}: item {i} has gold_answer '{rec['gold_answer']}'; {dataset} answers "
                              f"are integers 0-{n_answers - 1}")
        gold.append(int(g.group(1)))
    n = len(records)
    return QuestionFrame(tuple(f"{dataset}-{split}-{i:05d}" for i in range(n)),
                         tuple(str(r.get("category") or "all") for r in records),
                         np.array([estimate_tokens(r["question"]) + TEMPLATE_TOKENS for r in records]),
                         np.array(gold, dtype=int), np.full(n, n_answers),
                         tuple(r["question"] for r in records), integer_answers=True)


def frame(records, dataset: str, split: str, path: Path) -> QuestionFrame:
    preset = PRESETS[dataset]
    if preset.integer_answers:
        return integer_frame(records, dataset, split, path, preset.n_options)
    ids, cats, prompts, gold, n_opt = [], [], [], [], []
    for i, rec in enumerate(records):
        g, n = gold_option(rec, path, i)
        ids.append(f"{dataset}-{split}-{i:05d}")
        cats.append(str(rec.get("category") or "all"))
        prompts.append(estimate_tokens(rec["question"]) + TEMPLATE_TOKENS)
        gold.append(g)
        n_opt.append(n)
    return QuestionFrame(tuple(ids), tuple(cats), np.array(prompts), np.array(gold), np.array(n_opt),
                         tuple(r["question"] for r in records))


def profile_tables(profiles: ProfileSet | None, dataset: str) -> list[dict[str, float]] | None:
    """Each expert's profile accuracy table for `dataset` (EXPERTS order), or None unless all six
    experts' profiles have one."""
    if profiles is None:
        return None
    tables = [profiles.models[e].accuracy.get(dataset) if e in profiles.models else None for e in EXPERTS]
    return tables if all(tables) else None


def overall_accuracy(dataset: str, profiles: ProfileSet | None = None) -> np.ndarray:
    """Per expert (EXPERTS order): the dataset-wide level, the profile's "all" entry where the
    profiles carry accuracy tables, else the preset's."""
    preset, tables = PRESETS[dataset], profile_tables(profiles, dataset)
    return np.array([preset.base_accuracy[e] if tables is None else tables[i].get("all", preset.base_accuracy[e])
                     for i, e in enumerate(EXPERTS)])


def true_accuracy(dataset: str, categories, spread: float, profiles: ProfileSet | None = None) -> np.ndarray:
    """(questions x experts) true accuracy.

    When all six experts' profiles carry an accuracy table for the dataset: each expert's entry for
    the category, else its overall level (`overall_accuracy`). Otherwise the preset's per-category
    table (seeded spread) where the category is one of the preset's, else the preset's overall level."""
    preset, tables = PRESETS[dataset], profile_tables(profiles, dataset)
    base = overall_accuracy(dataset, profiles)
    if tables is not None:
        rows = {c: np.array([t.get(c, b) for t, b in zip(tables, base)]) for c in set(categories)}
        return np.array([rows[c] for c in categories]).reshape(len(categories), len(EXPERTS))
    table = skill_table(preset, spread)
    index = {c: i for i, c in enumerate(preset.categories)}
    return np.array([table[index[c]] if c in index else base for c in categories])


def _aggregator_logits(dataset: str, accuracy: np.ndarray, profiles: ProfileSet) -> np.ndarray:
    """The aggregator's per-category skill from the same table as the experts' accuracy."""
    preset = PRESETS[dataset]
    level = overall_accuracy(dataset, profiles)[EXPERTS.index(preset.aggregator)]
    return aggregator_logits(preset, accuracy, level)


@register_source("questions", reads=("dataset", "n_queries", "questions_dir", "prior_strength",
                                        "calibration_seed", *ROUTING, *ANSWER_MODEL))
def build(cfg: dict[str, Any], profiles: ProfileSet, seed: int) -> Workload:
    dataset = cfg.get("dataset")
    if dataset not in FILES:
        raise ConfigError(f"workload.dataset: '{dataset}' is not one of {sorted(FILES)}")
    spec = SyntheticSpec(**{k: v for k, v in cfg.items() if k in SyntheticSpec.__dataclass_fields__})
    preset = PRESETS[dataset]
    check_spec(spec, profiles, (*EXPERTS, preset.aggregator), dataset)
    qdir = resolve(cfg.get("questions_dir", "../shared/data/questions"), "workload.questions_dir", "dir")
    test_path, train_path = qdir / f"{FILES[dataset]}_test.json", qdir / f"{FILES[dataset]}_train.json"
    test = frame(load_questions(test_path), dataset, "test", test_path)
    train = frame(load_questions(train_path, what="calibration (train) file"), dataset, "train", train_path)
    if cfg.get("n_queries") is not None:
        n = int(cfg["n_queries"])
        if not 1 <= n <= len(test):
            raise ConfigError(f"workload.n_queries must be in [1, {len(test)}] for {dataset} (got {n})")
        test = QuestionFrame(test.ids[:n], test.categories[:n], test.prompt_tokens[:n], test.gold[:n],
                             test.n_options[:n], test.texts[:n], test.integer_answers)

    # Calibration: every expert answers every train question under the same outcome model, once per
    # dataset (its own generator, `calibration_seed`, not the run seed): Symbolic-MoE profiles its
    # experts on the calibration set once, and every run's recruiter and cost model read that profile.
    cal_seed = int(cfg.get("calibration_seed", 0))
    train_acc = true_accuracy(dataset, train.categories, spec.skill_spread, profiles)
    all_experts = np.tile(np.arange(len(EXPERTS)), (len(train), 1))
    calib = simulate(train, EXPERTS, train_acc, all_experts, preset.aggregator,
                     _aggregator_logits(dataset, train_acc, profiles), spec, profiles, np.random.default_rng(cal_seed),
                     "calibration", cal_seed, dataset=dataset)
    rng = np.random.default_rng(seed)
    correct = np.array([[calib.outcomes[expert_request_id(q, e)].answer == train.label(int(g)) for e in EXPERTS]
                        for q, g in zip(train.ids, train.gold)], dtype=float)
    categories = sorted(set(test.categories) | set(train.categories))
    skill = estimate_skills(train.categories, correct, categories, cfg.get("prior_strength", 5.0))
    cat_index = {c: i for i, c in enumerate(categories)}

    test_acc = true_accuracy(dataset, test.categories, spec.skill_spread, profiles)
    per_category = Counter(train.categories)
    cal = routing.Calibration(correct.mean(axis=0), len(train),
                              np.array([max(per_category[c], 1) for c in test.categories], dtype=float))
    chosen = routing.route(routing_spec(spec), skill[[cat_index[c] for c in test.categories]], spec.k, rng,
                           cal, EXPERTS, dataset)
    workload = simulate(test, EXPERTS, test_acc, chosen, preset.aggregator,
                        _aggregator_logits(dataset, test_acc, profiles), spec, profiles, rng, cfg.get("name", dataset),
                        seed, dataset=dataset)
    # The cost model sees the lengths of the experts' (simulated) train answers, never the test ones.
    return replace(workload, calibration=question_calibration(calib, train, (*EXPERTS, preset.aggregator)))
