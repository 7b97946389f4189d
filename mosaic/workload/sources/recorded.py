"""Trace-driven workloads: real questions, real expert answers, real output lengths.

Every expert request replays what a real model wrote for that question (its extracted answer and
the length of its output), so agreement, skip rate and accuracy are measured, not modelled. Only
the cost side (load time, memory, engine speed) comes from a profile.

Design choices, in the order the builder applies them:

* Lengths. Output tokens are counted from text with mosaic.workload.tokens (4 characters per token;
  no tokenizer may be downloaded here), or taken from the API's
  `completion_tokens` where a trace records it (medagents). An expert configured with
  `lengths: profile` has real answers but unrealistic token counts (models asked for the letter
  only), so its lengths are drawn from its profile instead, seeded.
* Matching. Question files hold "stem The options are: (A) .. (B) ..", traces hold stem and
  options apart; both are rebuilt into that one string and normalised to lowercase letters and
  digits only, which removes the punctuation and spacing the two sources disagree on. Duplicate
  texts in a trace keep the record with the smallest id, so every model resolves a duplicate alike.
* Questions. Only test questions that every expert and the aggregator model answered (have a
  record; an unparsed answer is a record that votes for nothing) enter the workload.
* Router. Per-category skills come from `router.estimate_skills` on a calibration set disjoint from
  the workload, scored with the experts' real answers: `calibration_questions` (a question file,
  e.g. MMLU_Pro_train.json, whose questions the traces cover) when given, else
  `calibration_size` test questions held out by a split seeded with `calibration_seed` (not the run
  seed, so every seed runs the same questions). Then `routing.route` recruits k experts per query:
  by default Symbolic-MoE's recruiter, with replacement (workload.routing, workload.replacement).
  `routing=paper_table3` is refused: Table 3 counts the paper's six experts, not these models.
* Repeated experts. With replacement a query can recruit the same expert twice ("q/m", "q/m#2").
  A trace holds one recorded output per (model, question), so what the second sample gets is a
  choice (`repeat_sample`), and the two choices bound the truth from either side:
  - "replay" (default): the repeat replays that same output, answer and length, which is what a
    greedy (temperature-0) re-run gives, and what our vLLM workers (temperature 0) would return.
    No answer is invented, so agreement stays measured. But Symbolic-MoE samples experts at
    temperature 0.7, where two samples of one model can disagree: a replayed repeat always agrees
    with its first sample, so the skip rate is an upper bound. Measured at seed 0, tau = 1:
    trace_mmlu_pro skips 65.4% with replayed repeats (44% of slots are repeats) against 26.8%
    with distinct experts (workload.replacement=false); trace_medmcqa 68.2% vs 61.7% (20%).
  - "resample": the repeat is a fresh draw, independent of the first given the question's
    category: right with the expert's calibrated accuracy there (the router's skill estimate),
    else a uniformly drawn wrong option; its length is the recorded one (length follows the
    question more than the sample). Two samples of a model agree less often than in reality,
    where they share the question's difficulty: a lower bound on agreement. Measured at seed 0,
    tau = 1: trace_mmlu_pro skips 17.6% (the paper: 45.7%, between the bounds), trace_medmcqa 53.8%.
  `mosaic.analysis.slots.repeat_share` reports the share of repeated slots.
* Aggregator. Its answer is a designated strong model's real answer (`aggregator.file`); its cost
  and output length are the paper aggregator's profile (`aggregator.profile`), sampled, seeded.
* Model names. The scheduler groups requests by model and costs them by profile, so an expert is
  scheduled under its profile name (`profile`, default: the expert's key); experts must not share one.

Parsed files are cached per process on (path, mtime), since a sweep builds one workload many times.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from mosaic.core.errors import ConfigError
from mosaic.profiles import ProfileSet
from mosaic.workload.calibration import trace_split_calibration
from mosaic.workload.sources.files import resolve
from mosaic.workload.sources.data_quality import DataReport, build_report
from mosaic.workload.sources.question_files import n_options
from mosaic.config.schema import REPEAT_SAMPLES
from mosaic.workload.sources.recorded_files import (LETTERS, READERS, QuestionSet, TraceRecord, read_questions, read_trace,
                                                  trace_stats)
from mosaic.workload.sources import ROUTING, register_source
from mosaic.workload.routing.skills import estimate_skills
from mosaic.workload.routing import recruit as routing
from mosaic.workload.tokens import estimate_tokens as tokens_from_text
from mosaic.workload.types import (Outcome, Query, Workload, aggregator_request_id, expert_request_id,
                                   expert_slots)

def data_report(spec: "TraceSpec", traces: Sequence[dict[str, TraceRecord]], agg_trace: dict[str, TraceRecord],
                qs: QuestionSet, answered: Sequence[int], in_calibration: int = 0) -> DataReport:
    """Per source file what it holds that a replay cannot use, and which test questions the
    intersection of experts and aggregator dropped (counts per source)."""
    sources = (*spec.experts, spec.aggregator)
    stats = {s.name: trace_stats(s.path, s.fmt) for s in sources}
    return build_report(qs.keys, answered, stats, dict(zip((s.name for s in sources), (*traces, agg_trace))),
                        in_calibration)


# ---------------------------------------------------------------- spec

@dataclass(frozen=True)
class TraceSource:
    name: str            # expert key in the config
    path: Path
    fmt: str
    profile: str         # cost side; also the model name the scheduler sees
    lengths: str         # "trace" | "profile"


@dataclass(frozen=True)
class TraceSpec:
    name: str
    dataset: str
    questions: Path
    calibration_questions: Path | None
    calibration_size: int
    calibration_seed: int
    experts: tuple[TraceSource, ...]
    aggregator: TraceSource
    k: int
    n_queries: int | None
    routing_noise: float
    prior_strength: float
    routing: routing.RoutingSpec = routing.RoutingSpec()
    repeat_sample: str = "replay"     # "replay" | "resample": what a repeated expert's sample gets


SOURCE_KEYS = frozenset({"file", "format", "profile", "lengths"})


def _source(name: str, d: Any, traces_dir: Path, field: str, default_lengths: str) -> TraceSource:
    if not isinstance(d, Mapping) or "file" not in d or "format" not in d:
        raise ConfigError(f"{field}: needs a mapping with 'file' and 'format' (and optionally 'profile', 'lengths')")
    unknown = sorted(set(map(str, d)) - SOURCE_KEYS)
    if unknown:
        raise ConfigError(f"{field}.{unknown[0]}: not a setting of a trace source; its settings are "
                          f"{', '.join(sorted(SOURCE_KEYS))}")
    lengths = d.get("lengths", default_lengths)
    if lengths not in ("trace", "profile"):
        raise ConfigError(f"{field}.lengths: '{lengths}' is not 'trace' or 'profile'")
    if d["format"] not in READERS:
        raise ConfigError(f"{field}.format: unknown format '{d['format']}'; choose one of {sorted(READERS)}")
    path = resolve(traces_dir / str(d["file"]), f"{field}.file", "file")
    return TraceSource(name, path, str(d["format"]), str(d.get("profile") or name), lengths)


def parse_spec(cfg: Mapping[str, Any]) -> TraceSpec:
    w = "workload"
    qdir = resolve(cfg.get("questions_dir", "../shared/data/questions"), f"{w}.questions_dir", "dir")
    tdir = resolve(cfg.get("traces_dir", "../shared/data/traces"), f"{w}.traces_dir", "dir")
    for key in ("questions", "experts", "aggregator"):
        if not cfg.get(key):
            raise ConfigError(f"{w}.{key}: required for kind 'trace' (see mosaic/conf/workload/trace_mmlu_pro.yaml)")
    if not isinstance(cfg["experts"], Mapping):
        raise ConfigError(f"{w}.experts: must map expert names to {{file, format, profile, lengths}}")
    experts = tuple(_source(str(n), d, tdir, f"{w}.experts.{n}", "trace") for n, d in cfg["experts"].items())
    cal = cfg.get("calibration_questions")
    spec = TraceSpec(
        name=str(cfg.get("name", "trace")), dataset=str(cfg.get("dataset", "trace")),
        questions=resolve(qdir / str(cfg["questions"]), f"{w}.questions", "file"),
        calibration_questions=resolve(qdir / str(cal), f"{w}.calibration_questions", "file") if cal else None,
        calibration_size=int(cfg.get("calibration_size", 0) or 0),
        calibration_seed=int(cfg.get("calibration_seed", 0)),
        experts=experts,
        aggregator=_source("aggregator", cfg["aggregator"], tdir, f"{w}.aggregator", "profile"),
        k=int(cfg.get("k", 3)), n_queries=cfg.get("n_queries"),
        routing_noise=float(cfg.get("routing_noise", 0.15)),
        routing=routing.routing_spec(cfg),
        repeat_sample=str(cfg.get("repeat_sample") or "replay"),
        prior_strength=float(cfg.get("prior_strength", 5.0)))
    if not 1 <= spec.k <= len(experts):
        raise ConfigError(f"{w}.k must be between 1 and the {len(experts)} configured experts (got {spec.k})")
    if spec.repeat_sample not in REPEAT_SAMPLES:
        raise ConfigError(f"{w}.repeat_sample: '{spec.repeat_sample}' is not one of {list(REPEAT_SAMPLES)}")
    profiles_used = [e.profile for e in experts]
    if len(set(profiles_used)) != len(profiles_used):
        raise ConfigError(f"{w}.experts: two experts share a profile ({profiles_used}); the scheduler "
                          "tells models apart by profile name, so give each expert its own")
    if spec.n_queries is not None and int(spec.n_queries) < 1:
        raise ConfigError(f"{w}.n_queries must be >= 1 or null (got {spec.n_queries})")
    if spec.calibration_questions is None and spec.calibration_size < 1:
        raise ConfigError(f"{w}.calibration_size: set it >= 1 (held-out calibration questions) or set "
                          f"{w}.calibration_questions to a calibration question file")
    return spec


# ---------------------------------------------------------------- build

def _correctness(keys: Sequence[str], golds: Sequence[str], traces: Sequence[dict[str, TraceRecord]]) -> np.ndarray:
    """(questions x experts) 1/0 real correctness; NaN where the expert has no record."""
    out = np.full((len(keys), len(traces)), np.nan)
    for j, t in enumerate(traces):
        for i, (k, g) in enumerate(zip(keys, golds)):
            r = t.get(k)
            if r is not None:
                out[i, j] = float(r.answer == g)
    return out


def _calibration(spec: TraceSpec, traces, candidates: list[int], qs: QuestionSet):
    """(calibration categories, correctness, test indices left for the workload)."""
    if spec.calibration_questions is not None:
        cal = read_questions(spec.calibration_questions, "workload.calibration_questions", "calibration (train) file")
        rows = [i for i, k in enumerate(cal.keys) if any(k in t for t in traces)]
        if not rows:
            raise ConfigError(f"workload.calibration_questions: no question of {spec.calibration_questions} "
                              "appears in the expert traces; use calibration_size instead")
        cal_keys = {cal.keys[i] for i in rows}
        left = [i for i in candidates if qs.keys[i] not in cal_keys]
        return ([cal.categories[i] for i in rows],
                _correctness([cal.keys[i] for i in rows], [cal.gold[i] for i in rows], traces), left)
    if not candidates:   # before blaming the split: nothing of this question file is in the traces
        raise ConfigError(f"workload: no question of {spec.questions} is answered by every expert and the "
                          "aggregator; check the trace files belong to this dataset (workload.questions, "
                          "workload.experts.*.file)")
    if spec.calibration_size >= len(candidates):
        raise ConfigError(f"workload.calibration_size={spec.calibration_size} leaves no test questions "
                          f"(only {len(candidates)} answered by every model)")
    rng = np.random.default_rng(spec.calibration_seed)
    held = set(rng.choice(len(candidates), spec.calibration_size, replace=False).tolist())
    cal_rows = [c for j, c in enumerate(candidates) if j in held]
    held_keys = {qs.keys[i] for i in cal_rows}  # a question listed twice must not straddle the split
    left = [c for j, c in enumerate(candidates) if j not in held and qs.keys[c] not in held_keys]
    return ([qs.categories[i] for i in cal_rows],
            _correctness([qs.keys[i] for i in cal_rows], [qs.gold[i] for i in cal_rows], traces), left)


def _check_options(spec: TraceSpec, traces, agg_trace, qs, answered: Sequence[int]) -> None:
    """A record may not have more options than its question's text lists: its answers (and a
    resampled answer's wrong options) are letters among them. (Fewer is allowed in the published
    traces: an option's own text can hold "(K)", which the count of the text's letters takes for one
    more option; a mosaic_json file, which mosaic record writes with that count, must match it.)"""
    sources = [*((e, f"workload.experts.{e.name}", t) for e, t in zip(spec.experts, traces)),
               (spec.aggregator, "workload.aggregator", agg_trace)]
    for i in answered:
        listed = n_options(qs.texts[i])
        if not listed:
            continue
        for src, field, trace in sources:
            rec = trace[qs.keys[i]]
            # mosaic record writes the question's own count: a recorded file must match it
            if rec.n_options > listed or (src.fmt == "mosaic_json" and rec.n_options != listed):
                raise ConfigError(f"{field}: {src.path}: record {rec.record_id} has {rec.n_options} options where "
                                  f"its question (item {i} of {spec.questions}) lists {listed}; fix its n_options or "
                                  "record the trace again from this question file (mosaic record)")


def build_trace_workload(spec: TraceSpec, profiles: ProfileSet, seed: int) -> Workload:
    for src, field in [*((e, f"workload.experts.{e.name}") for e in spec.experts),
                       (spec.aggregator, "workload.aggregator")]:
        if src.profile not in profiles.models:
            raise ConfigError(f"{field}.profile: no model '{src.profile}' in the profiles ({', '.join(profiles.models)}); "
                              f"name one of them, or add its profile to the profile set")
    traces = [read_trace(e.path, e.fmt, f"workload.experts.{e.name}") for e in spec.experts]
    agg_trace = read_trace(spec.aggregator.path, spec.aggregator.fmt, "workload.aggregator")
    qs = read_questions(spec.questions)
    answered = [i for i, k in enumerate(qs.keys) if k in agg_trace and all(k in t for t in traces)]
    _check_options(spec, traces, agg_trace, qs, answered)
    cal_cats, cal_correct, test = _calibration(spec, traces, answered, qs)
    # A calibration file's questions that the test file holds too are left out of the test set: counted
    in_calibration = len(answered) - len(test) if spec.calibration_questions is not None else 0
    length_calibration = trace_split_calibration(spec, traces, answered, test, qs, profiles, seed)
    if spec.n_queries is not None:
        if test and int(spec.n_queries) > len(test):
            # Clipping would run fewer queries than asked and say nothing.
            raise ConfigError(f"workload.n_queries must be in [1, {len(test)}] for these traces: {len(test)} "
                              f"questions are answered by every expert and the aggregator and not held out "
                              f"for calibration (got {spec.n_queries}); lower it, or leave it null for all")
        test = test[: int(spec.n_queries)]
    if not test:
        keys = set(qs.keys)
        counts = ", ".join(f"{name} {len(keys & set(t))}" for name, t in
                           [*((e.name, t) for e, t in zip(spec.experts, traces)), ("aggregator", agg_trace)])
        raise ConfigError(f"workload: no question of {spec.questions} is answered by every expert and the "
                          f"aggregator (questions answered per trace file: {counts} of {len(keys)}); a file with 0 "
                          "is empty or belongs to another dataset")
    categories = sorted(set(qs.categories[i] for i in test))
    try:
        skill = estimate_skills(cal_cats, cal_correct, categories, spec.prior_strength)
    except ConfigError as e:
        raise ConfigError(f"workload calibration: {e}") from None

    rng_route, rng_len, rng_repeat = (np.random.default_rng([seed, s]) for s in (0, 1, 2))
    cat_index = {c: i for i, c in enumerate(categories)}
    per_category = Counter(cal_cats)
    cal = routing.Calibration(np.nanmean(cal_correct, axis=0), len(cal_cats),
                              np.array([max(per_category[qs.categories[i]], 1) for i in test], dtype=float))
    chosen = routing.route(spec.routing, skill[[cat_index[qs.categories[i]] for i in test]], spec.k, rng_route,
                           cal, tuple(e.profile for e in spec.experts), spec.dataset)
    engine = profiles.engine
    n = len(test)
    # Drawn for every query in config order, so a profile length does not depend on routing.
    sampled = {e.name: profiles.model(e.profile).output_for(spec.dataset).sample(rng_len, n)
               for e in spec.experts if e.lengths == "profile"}
    agg_len = profiles.model(spec.aggregator.profile).output_for(spec.dataset).sample(rng_len, n)

    queries, outcomes, n_opts = [], {}, 2
    for row, i in enumerate(test):
        qid = f"{spec.dataset}-{i:05d}"
        prompt = tokens_from_text(qs.texts[i])
        models = tuple(spec.experts[j].profile for j in chosen[row])
        for j, (m, sample) in zip(chosen[row], expert_slots(models)):
            e, rec = spec.experts[j], traces[j][qs.keys[i]]
            # A length drawn from the profile stops at the context window, as every source's draws do.
            # A recorded one is replayed as recorded (the readers refuse a count outside [0, 2^21]): one
            # that does not fit this engine's context window is a request that cannot be served as
            # asked, refused or truncated and counted before the run starts (mosaic.costs.predict.
            # admit_requests), never clipped here.
            out = (max(1, min(int(sampled[e.name][row]), engine.output_room(prompt))) if e.lengths == "profile"
                   else rec.output_tokens)
            answer = rec.answer
            if sample > 1 and spec.repeat_sample == "resample":   # see the module docstring
                answer = _resample(qs.gold[i], rec.n_options, skill[cat_index[qs.categories[i]], j], rng_repeat)
            outcomes[expert_request_id(qid, m, sample)] = Outcome(out, answer)
            n_opts = max(n_opts, rec.n_options)
        outcomes[aggregator_request_id(qid)] = Outcome(min(int(agg_len[row]), engine.aggregator_cap),
                                                       agg_trace[qs.keys[i]].answer)
        queries.append(Query(qid, qs.categories[i], prompt, qs.gold[i], models, 0.0, qs.texts[i]))
    return Workload(name=spec.name, seed=seed, queries=tuple(queries),
                    expert_models=tuple(e.profile for e in spec.experts), aggregator=spec.aggregator.profile,
                    outcomes=outcomes, options=tuple(LETTERS[:n_opts]), calibration=length_calibration,
                    data_report=data_report(spec, traces, agg_trace, qs, answered, in_calibration))


def _resample(gold: str, n_options: int, p_correct: float, rng: np.random.Generator) -> str:
    """A fresh answer: right with probability p_correct, else a uniformly drawn wrong option."""
    if rng.random() < p_correct:
        return gold
    wrong = [o for o in LETTERS[:n_options] if o != gold]
    return wrong[int(rng.integers(len(wrong)))]


@register_source("trace", reads=("dataset", "n_queries", "questions_dir", "traces_dir", "questions",
                                  "calibration_questions", "calibration_size", "calibration_seed", "experts",
                                  "aggregator", "repeat_sample", "prior_strength", *ROUTING))
def build(cfg: dict, profiles: ProfileSet, seed: int) -> Workload:
    return build_trace_workload(parse_spec(cfg), profiles, seed)
