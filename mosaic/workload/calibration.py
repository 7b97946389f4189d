"""Calibration statistics: per model, its output lengths on the calibration (train) split.

The paper's cost model sees only a small train-only calibration subset (350 MMLU-Pro, 504 MedMCQA
questions): "the scheduler never observes the test set". Every workload builder attaches these
statistics to `Workload.calibration`, measured where the workload kind has them:

* trace workloads: the experts' recorded outputs on the calibration questions (the train file, or
  the held-out calibration questions), profile draws for experts replayed with profile lengths;
* question workloads: the experts' simulated answers to the train questions (the ones the router
  is calibrated on);
* synthetic workloads: a separate seeded draw of the dataset's calibration size from the profile.

mosaic.costs.predict reads only these, never the test outcomes.
"""
from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import numpy as np

from mosaic.profiles import ProfileSet
from mosaic.workload.sources.recorded_files import read_questions
from mosaic.workload.tokens import estimate_tokens
from mosaic.workload.types import LengthStats, Outcome, Workload, aggregator_request_id

if TYPE_CHECKING:
    from mosaic.workload.answer_model import QuestionFrame

# Calibration (train) split sizes: the question files' *_train.json in ../shared/data/questions.
CALIBRATION_SIZES = {"mmlu_pro": 350, "medmcqa": 504, "gpqa": 249, "aime24": 354}
DEFAULT_SIZE = 350
# A stream of its own, so drawing the calibration set never shifts the workload's own draws.
STREAM = 7


def calibration_size(dataset: str | None) -> int:
    return CALIBRATION_SIZES.get(dataset or "", DEFAULT_SIZE)


def length_stats(lengths: Sequence[int] | np.ndarray, prompts: Sequence[int] | np.ndarray,
                 source: str) -> LengthStats:
    lengths = np.asarray(lengths, dtype=float)
    if lengths.size == 0:
        raise ValueError("calibration statistics of an empty sample")
    return LengthStats(int(lengths.size), float(lengths.mean()), int(lengths.max()),
                       float(np.mean(prompts)), source)


def from_outcomes(outcomes: Mapping[str, Outcome], requests: Iterable[tuple[str, str, int]],
                  source: str) -> dict[str, LengthStats]:
    """requests: (request id, model, prompt tokens) of the calibration split's requests."""
    lengths: dict[str, list[int]] = {}
    prompts: dict[str, list[int]] = {}
    for rid, model, prompt in requests:
        lengths.setdefault(model, []).append(outcomes[rid].output_tokens)
        prompts.setdefault(model, []).append(prompt)
    return {m: length_stats(lengths[m], prompts[m], source) for m in lengths}


def from_profiles(profiles: ProfileSet, models: Iterable[str], dataset: str | None,
                  prompts: np.ndarray, rng: np.random.Generator, source: str) -> dict[str, LengthStats]:
    """A calibration draw of len(prompts) answers per model from its profile's lengths on `dataset`."""
    out = {}
    for m in dict.fromkeys(models):
        draw = profiles.model(m).output_for(dataset).sample(rng, len(prompts))
        out[m] = length_stats(np.minimum(draw, profiles.engine.output_room(prompts)), prompts, source)
    return out


def synthetic_calibration(profiles: ProfileSet, models: Iterable[str], dataset: str, prompt_median: float,
                          seed: int) -> dict[str, LengthStats]:
    """Synthetic workloads: the dataset's calibration size drawn from the profiles, seeded apart."""
    rng = np.random.default_rng([seed, STREAM])
    n = calibration_size(dataset)
    prompts = np.clip(np.rint(rng.lognormal(np.log(prompt_median), 0.4, size=n)), 16, 4096).astype(int)
    return from_profiles(profiles, models, dataset, prompts, rng,
                         f"synthetic calibration draw: {n} answers per model from the {dataset} profile")


def with_categories(stats: dict[str, LengthStats], samples: Iterable[tuple[str, str, int]]) -> dict[str, LengthStats]:
    """The statistics with per-category means added; samples: (model, category, output tokens)."""
    groups: dict[str, dict[str, list[int]]] = {}
    for model, category, tokens in samples:
        groups.setdefault(model, {}).setdefault(category, []).append(tokens)
    return {m: replace(s, by_category={c: (len(v), float(np.mean(v))) for c, v in sorted(groups.get(m, {}).items())})
            for m, s in stats.items()}


def question_calibration(calib: Workload, train: "QuestionFrame", models: Iterable[str]) -> dict[str, LengthStats]:
    """Question workloads: lengths of the simulated answers every expert (and the aggregator) gave
    to the train questions, the same answers the router's skills are estimated from."""
    wanted = set(models)
    reqs = [(r.id, r.model, r.prompt_tokens) for r in calib.expert_requests() if r.model in wanted]
    stats = from_outcomes(calib.outcomes, reqs, f"simulated answers to the {len(train)} train questions")
    for m in wanted - set(stats):   # the aggregator when it is not one of the experts
        reqs = [(aggregator_request_id(q.id), m, q.prompt_tokens) for q in calib.queries]
        stats.update(from_outcomes(calib.outcomes, reqs, f"simulated aggregator answers to the "
                                                           f"{len(train)} train questions"))
    category = {q.id: q.category for q in calib.queries}
    return with_categories(stats, ((r.model, category[r.query_id], calib.outcomes[r.id].output_tokens)
                                   for r in calib.expert_requests() if r.model in wanted))


def trace_calibration(experts: Sequence[tuple[str, str, Mapping[str, Any] | None]], aggregator: str,
                      keys: Sequence[str], prompts: Sequence[int], profiles: ProfileSet, dataset: str | None,
                      seed: int, where: str, categories: Sequence[str] | None = None) -> dict[str, LengthStats]:
    """Trace workloads: per expert (profile name, lengths mode, its trace by question key), the
    recorded output lengths on the calibration questions `keys`; experts replayed with profile
    lengths, and the aggregator (whose length is always drawn), get a seeded profile draw of as
    many answers."""
    if not keys:
        raise ValueError("trace calibration without calibration questions")
    prompt_of = dict(zip(keys, prompts))
    rng = np.random.default_rng([seed, STREAM])
    out: dict[str, LengthStats] = {}
    drawn = []
    for profile, lengths, trace in experts:
        seen = [k for k in keys if k in trace] if lengths == "trace" and trace is not None else []
        if seen:
            out[profile] = length_stats([trace[k].output_tokens for k in seen], [prompt_of[k] for k in seen],
                                        f"recorded outputs on the {len(seen)} calibration questions ({where})")
        else:
            drawn.append(profile)
    drawn.append(aggregator)
    out.update(from_profiles(profiles, [m for m in drawn if m not in out], dataset,
                             np.asarray(prompts, dtype=int), rng,
                             f"profile draw of {len(keys)} answers (lengths not replayed from a trace)"))
    if categories is None:
        return out
    category = dict(zip(keys, categories))
    return with_categories(out, ((profile, category[k], trace[k].output_tokens)
                                 for profile, lengths, trace in experts if lengths == "trace" and trace is not None
                                 for k in keys if k in trace))


def trace_split_calibration(spec: Any, traces: Sequence[Mapping[str, Any]], answered: Sequence[int],
                            test: Sequence[int], qs: Any, profiles: ProfileSet, seed: int) -> dict[str, LengthStats]:
    """The calibration split of a trace workload (mosaic.workload.sources.recorded): the calibration question
    file's questions the traces cover, else the answered questions held out of the test set."""
    if spec.calibration_questions is not None:
        cal = read_questions(spec.calibration_questions)
        rows = [i for i, k in enumerate(cal.keys) if any(k in t for t in traces)]
        keys, texts, where = [cal.keys[i] for i in rows], [cal.texts[i] for i in rows], spec.calibration_questions.name
        cats = [cal.categories[i] for i in rows]
    else:
        kept = {qs.keys[i] for i in test}
        rows = [i for i in answered if qs.keys[i] not in kept]
        keys, texts, where = [qs.keys[i] for i in rows], [qs.texts[i] for i in rows], "held-out test questions"
        cats = [qs.categories[i] for i in rows]
    experts = [(e.profile, e.lengths, t) for e, t in zip(spec.experts, traces)]
    return trace_calibration(experts, spec.aggregator.profile, keys, [estimate_tokens(t) for t in texts],
                             profiles, spec.dataset, seed, where, cats)
