"""Measure the difficulty coupling of mosaic/profiles/difficulty.py on real traces.

Input: several models' answers to the same questions: correct (models x questions, 0/1), answers
(None = no parsed answer), output lengths, option counts, and a group per question (its category,
or one group). Groups take out what the category already explains (its accuracy and length levels).

* Discrimination a: marginal maximum likelihood of the IRT model P(correct) = expit(b_m,g - a z),
  z ~ N(0, 1) integrated by Gauss-Hermite quadrature, one b per (model, group). a is what makes
  two models' errors fall on the same questions: the larger, the more often experts agree.
* Distractor share d: of the pairs of models both wrong on a question, the share that gave the
  same wrong answer, p; under the answer model p = d^2 + (1 - d^2) / k (k wrong options), so
  d = sqrt((p k - 1) / (k - 1)), 0 when p is at or below chance.
* Length loading on difficulty rho: fitted so that the model's *length-agreement link* equals the
  traces' one: Spearman rho(agreement, mean output length) over every triple of distinct models,
  the statistic behind the paper's Fig. 7 and behind what the aggregator gate saves. The model
  is simulated on the same questions with the fitted (a, b, d) and each model's own lengths as the
  marginal, with common random numbers, and rho is solved by bisection.
  The length-*correctness* link gives a second estimate (`length_from_correctness`, per model:
  corr(length score, correct) / corr(z, correct) implied by (a, b)); it is reported, not used,
  because it understates the agreement link (measured: 0.45 gives Spearman -0.30 on MedMCQA's
  reasoning traces, which show -0.44): answers that disagree are longer than their right/wrong
  pattern alone explains.
* Verbosity loading s: two models' length scores correlate rho^2 + s^2 under the model, so
  s = sqrt(measured cross-model correlation - rho^2), 0 when rho^2 already exceeds it (the model
  then overstates that correlation; the report shows both).

`fit_datasets` (`python experiments/fit_difficulty.py`, about 5 minutes) fits this to the traces in
../shared/data and writes the `datasets` section of the profile file (keeping everything else):

* mmlu_pro: the reasoning models of MedAgentsBench on MMLU-Pro's health questions (724 all four
  answered); `category_length` = each category's mean length / the overall mean on the five 7-8B
  instruct models' MMLU-Pro CoT traces (mosaic.fitting.lengths.category_length_ratios). Those
  instruct traces are fitted and reported too (grouped by category) but not used for the coupling:
  16-23% of three of the models' answers are unparsed (no "The answer is"), which the answer
  model has no place for, and the fitted model fails the Fig. 7 check there.
* medmcqa: the reasoning models of MedAgentsBench on MedMCQA (DeepSeek-R1, QwQ-32B-Preview,
  o1-mini, o3-mini; 2,807 questions).
* gpqa, aime24: no trace of any model on them exists here; they get the mean of the two reasoning
  fits (MedMCQA and MMLU-Pro health), as the paper's pool answers them with its reasoning experts.

Then it checks the fit on what was not fitted: the agreement bucket shares and the mean length per
bucket (relative to the overall mean) of every triple of distinct trace models, measured on the
traces and simulated under the fit, and writes results/difficulty_fit.md. Run it after
experiments/fit_profiles.py, which rewrites the profile file from scratch.
"""
from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from scipy import optimize, stats
from scipy.special import expit, log_expit

from mosaic.core.errors import ConfigError
from mosaic.fitting.lengths import DEFAULT_DATA, INSTRUCT_TRACES, REASONING, category_length_ratios
from mosaic.fitting.lengths import DEFAULT_OUT as DEFAULT_PROFILES
from mosaic.profiles import load_profiles
from mosaic.workload.sources.recorded_files import read_trace


def distractor_share(answers, correct, n_options) -> tuple[float, float, int]:
    """(d, measured same-wrong-answer share p, pairs) from answers (models x questions; None = no
    parsed answer, which is left out), correctness and each question's option count."""
    c = np.asarray(correct, dtype=bool)
    same = pairs = 0
    wrong_options = []
    for i, j in itertools.combinations(range(len(answers)), 2):
        for q, (x, y) in enumerate(zip(answers[i], answers[j])):
            if not c[i, q] and not c[j, q] and x is not None and y is not None:
                pairs += 1
                same += x == y
                wrong_options.append(n_options[q] - 1)
    if not pairs:
        raise ConfigError("difficulty fit: no question where two models are both wrong with parsed answers; "
                          "the distractor share needs some")
    p, k = same / pairs, float(np.mean(wrong_options))
    return (float(np.sqrt(max(0.0, (p * k - 1) / (k - 1)))) if k > 1 else 1.0), p, pairs

_Z, _W = np.polynomial.hermite_e.hermegauss(41)
_W = _W / _W.sum()


@dataclass(frozen=True)
class DifficultyFit:
    n_models: int
    n_questions: int
    accuracy: float                 # a
    length: float                   # rho, fitted to the length-agreement link
    shared: float                   # s
    distractor_share: float         # d
    length_from_correctness: tuple[float, ...]   # per model: the length-correctness estimate of rho
    cross_length_corr: float        # mean pairwise corr of the models' length scores
    cross_correct_corr: float       # mean pairwise phi of the models' correctness (a check on a)
    same_wrong_share: float         # p: both-wrong pairs giving the same wrong answer
    link_traces: tuple[float, ...]  # triple_stats of the traces
    link_model: tuple[float, ...]   # triple_stats simulated under the fit


def _check(correct: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c = np.asarray(correct, dtype=float)
    g = np.asarray(groups)
    if c.ndim != 2 or c.shape[0] < 2 or c.shape[1] != len(g):
        raise ConfigError(f"difficulty fit: need correct as (models >= 2) x questions with one group per "
                          f"question (got {c.shape} and {len(g)} groups)")
    _, g = np.unique(g, return_inverse=True)
    return c, g


def fit_discrimination(correct, groups) -> tuple[float, np.ndarray]:
    """(a, b[model, group]) maximising the marginal likelihood; gradient analytic."""
    c, g = _check(correct, groups)
    m, ng = c.shape[0], int(g.max()) + 1
    onehot = np.zeros((len(g), ng))
    onehot[np.arange(len(g)), g] = 1.0
    cq = c[:, :, None]

    def nll(theta: np.ndarray) -> tuple[float, np.ndarray]:
        a, b = theta[0], theta[1:].reshape(m, ng)
        eta = b[:, g][:, :, None] - a * _Z[None, None, :]               # models x questions x nodes
        ll = (cq * log_expit(eta) + (1 - cq) * log_expit(-eta)).sum(axis=0)   # questions x nodes
        top = ll.max(axis=1, keepdims=True)
        post = np.exp(ll - top) * _W
        norm = post.sum(axis=1, keepdims=True)
        post /= norm                                                     # posterior over nodes
        resid = (cq - expit(eta)) * post[None]                           # d ll / d eta, weighted
        grad_b = resid.sum(axis=2) @ onehot                              # models x groups
        grad_a = -(resid * _Z[None, None, :]).sum()
        return -float((top[:, 0] + np.log(norm[:, 0])).sum()), -np.r_[grad_a, grad_b.ravel()]

    res = optimize.minimize(nll, np.r_[1.0, np.zeros(m * ng)], jac=True, method="L-BFGS-B",
                            bounds=[(1e-3, 20.0)] + [(-20.0, 20.0)] * (m * ng))
    return float(res.x[0]), res.x[1:].reshape(m, ng)


def normal_scores(x: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Rank-based normal scores of x within each group (ties share their mean rank)."""
    out = np.empty(len(x))
    for k in np.unique(groups):
        s = groups == k
        out[s] = stats.norm.ppf((stats.rankdata(x[s]) - 0.5) / s.sum())
    return out


def _within(x: np.ndarray, groups: np.ndarray) -> np.ndarray:
    out = x.astype(float).copy()
    for k in np.unique(groups):
        out[groups == k] -= out[groups == k].mean()
    return out


def length_from_correctness(c: np.ndarray, g: np.ndarray, scores: np.ndarray, a: float, b: np.ndarray) -> list[float]:
    """Per model: corr(length score, correct) within groups / the corr(z, correct) that (a, b) imply."""
    counts = np.bincount(g)
    out = []
    for i in range(len(c)):
        centred = _within(c[i], g)
        denom = np.sqrt((scores[i] ** 2).sum() * (centred ** 2).sum())
        measured = float(scores[i] @ centred / denom) if denom else 0.0
        p = expit(b[i][:, None] - a * _Z[None, :])                       # groups x nodes
        cov = float(counts @ (p @ (_W * _Z))) / counts.sum()             # pooled within groups
        pbar = p @ _W
        var = float(counts @ (pbar * (1 - pbar))) / counts.sum()
        out.append(measured / (cov / np.sqrt(var)) if cov else 0.0)
    return out


def triple_stats(answers, lengths: np.ndarray) -> np.ndarray:
    """Fig. 7 over every triple of distinct models, averaged: [Spearman rho(agreement, mean length),
    share 3:0, 2:1, 1:1:1, mean length of 3:0, 2:1, 1:1:1 / the overall mean]. A missing answer
    (None) votes for nothing."""
    rows = []
    for tri in itertools.combinations(range(len(answers)), 3):
        votes = np.array([max([sum(x == y for y in col) for x in col if x is not None] or [1])
                          for col in zip(*(answers[i] for i in tri))])
        mean_len = lengths[list(tri)].mean(axis=0)
        rho = stats.spearmanr(votes, mean_len).statistic if np.ptp(votes) else np.nan
        shares = [np.mean(votes == v) for v in (3, 2, 1)]
        rel = [mean_len[votes == v].mean() / mean_len.mean() if (votes == v).any() else np.nan for v in (3, 2, 1)]
        rows.append([rho, *shares, *rel])
    if not rows:
        raise ConfigError("difficulty fit: the agreement link needs at least 3 models")
    return np.nanmean(np.array(rows), axis=0)


@dataclass(frozen=True)
class Draws:
    """Common random numbers for simulating one set of traces (so rho can be solved smoothly)."""
    z: np.ndarray
    v: np.ndarray
    noise: np.ndarray        # models x questions
    right: np.ndarray        # models x questions, uniforms
    spread: np.ndarray       # models x questions, uniforms (distractor or not)
    other: np.ndarray        # models x questions, wrong-option offsets
    distractor: np.ndarray   # per question
    noise_u: np.ndarray      # models x questions, uniforms (unparsed or not)

    @staticmethod
    def make(shape: tuple[int, int], n_options: np.ndarray, rng: np.random.Generator) -> "Draws":
        m, q = shape
        return Draws(rng.normal(size=q), rng.normal(size=q), rng.normal(size=(m, q)), rng.random((m, q)),
                     rng.random((m, q)), rng.integers(1, n_options, size=(m, q)), rng.integers(1, n_options),
                     rng.random((m, q)))


def simulate(a: float, b: np.ndarray, d: float, rho: float, s: float, lengths: np.ndarray, g: np.ndarray,
             draws: Draws, unparsed: np.ndarray | None = None) -> tuple[list[list], np.ndarray]:
    """Answers (gold = 0) and lengths for the traces' questions under the model; each model's own
    lengths within the group are its marginal. unparsed: per model, the share of its wrong answers
    the traces hold as None (no parsed answer), so that the simulated votes are counted alike."""
    right = draws.right < expit(b[:, g] - a * draws.z[None, :])
    wrong = np.where(draws.spread < d, draws.distractor[None, :], draws.other)
    answers = np.where(right, 0, wrong).astype(object)
    if unparsed is not None:
        lost = ~right & (draws.noise_u < unparsed[:, None])
        answers[lost] = None
    latent = rho * draws.z + s * draws.v + np.sqrt(max(0.0, 1 - rho ** 2 - s ** 2)) * draws.noise
    u = stats.norm.cdf(latent)
    out = np.empty_like(lengths, dtype=float)
    for k in np.unique(g):
        cols = g == k
        for i in range(len(lengths)):
            out[i, cols] = np.quantile(lengths[i, cols], u[i, cols])
    return [list(row) for row in answers], out


def fit_link(target: float, a: float, b: np.ndarray, d: float, lengths: np.ndarray, g: np.ndarray,
             n_options: np.ndarray, seeds: int = 2, hi: float = 0.95, unparsed: np.ndarray | None = None) -> float:
    """rho whose simulated Spearman rho(agreement, length) equals `target` (s = 0 while solving: the
    verbosity part is shared by the three answers alike, so it barely moves the link)."""
    draws = [Draws.make(lengths.shape, n_options, np.random.default_rng(k)) for k in range(seeds)]

    def link(rho: float) -> float:
        return float(np.mean([triple_stats(*simulate(a, b, d, rho, 0.0, lengths, g, dr, unparsed))[0] for dr in draws]))

    lo_v, hi_v = link(0.0), link(hi)
    if target >= lo_v:
        return 0.0
    if target <= hi_v:
        return hi
    lo = 0.0
    for _ in range(12):   # bisection: the link falls monotonically in rho
        mid = (lo + hi) / 2
        if link(mid) > target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def fit(correct, answers, lengths, n_options, groups, seeds: int = 3) -> DifficultyFit:
    c, g = _check(correct, groups)
    lengths = np.asarray(lengths, dtype=float)
    n_options = np.asarray(n_options)
    if lengths.shape != c.shape or len(answers) != len(c):
        raise ConfigError(f"difficulty fit: lengths {lengths.shape} and answers ({len(answers)} models) must "
                          f"match correct {c.shape}")
    a, b = fit_discrimination(c, g)
    d, p_same, _ = distractor_share(answers, c, n_options)
    scores = np.array([normal_scores(row, g) for row in lengths])
    pairs = list(itertools.combinations(range(len(c)), 2))
    cross = float(np.mean([np.corrcoef(scores[i], scores[j])[0, 1] for i, j in pairs]))
    phi = float(np.mean([np.corrcoef(c[i], c[j])[0, 1] for i, j in pairs]))
    measured = triple_stats(answers, lengths)
    unparsed = np.array([sum(x is None for x in row) / max(1.0, (1 - c[i]).sum()) for i, row in enumerate(answers)])
    rho = fit_link(float(measured[0]), a, b, d, lengths, g, n_options, seeds, unparsed=unparsed)
    shared = float(np.sqrt(max(0.0, min(cross - rho ** 2, 0.98 - rho ** 2))))
    check = np.mean([triple_stats(*simulate(a, b, d, rho, shared, lengths, g,
                                            Draws.make(lengths.shape, n_options, np.random.default_rng(100 + k)),
                                            unparsed))
                     for k in range(seeds)], axis=0)
    return DifficultyFit(len(c), c.shape[1], a, rho, shared, d,
                         tuple(length_from_correctness(c, g, scores, a, b)), cross, phi, p_same,
                         tuple(map(float, measured)), tuple(map(float, check)))


# ---------------------------------------------------------------- the traces in ../shared/data

DEFAULT_REPORT = Path(__file__).resolve().parents[2] / "results" / "difficulty_fit.md"

SOURCES = {  # name -> (trace files under traces/, format, group by category)
    "MMLU-Pro, 5 instruct 7-8B models (CoT)": ([f"mmlu_pro/{Path(p).name}" for p in INSTRUCT_TRACES.values()],
                                               "mmlu_pro_zip", True),
    "MedMCQA, 4 reasoning models (MedAgentsBench)": ([f"medagents/medmcqa/{m}.json" for m in REASONING],
                                                     "medagents_json", False),
    "MMLU-Pro health, 4 reasoning models (MedAgentsBench)": ([f"medagents/mmlu-pro/{m}.json" for m in REASONING],
                                                             "medagents_json", False),
}
MMLU, MED, HEALTH = SOURCES


def matrices(data: Path, files: list[str], fmt: str, by_category: bool):
    """correct, lengths (models x questions), groups, answers, option counts over the questions
    every model answered (sorted by question key, so the result does not depend on file order)."""
    traces = [read_trace(data / "traces" / f, fmt) for f in files]
    keys = sorted(set.intersection(*(set(t) for t in traces)))
    recs = [[t[k] for k in keys] for t in traces]
    correct = np.array([[r.answer is not None and r.answer == r.gold for r in row] for row in recs], float)
    lengths = np.array([[r.output_tokens for r in row] for row in recs], float)
    groups = np.array([(recs[0][q].category or "all") if by_category else "all" for q in range(len(keys))])
    answers = [[r.answer for r in row] for row in recs]
    n_options = np.array([recs[0][q].n_options for q in range(len(keys))])
    return correct, lengths, groups, answers, n_options


def write_section(path: Path, section: dict) -> None:
    """Put `datasets` into the profile file, keeping its header comment and everything else."""
    text = path.read_text()
    header = "".join(re.match(r"((?:#[^\n]*\n)*)", text).group(1))
    raw = yaml.safe_load(text)
    raw["datasets"] = section
    # What it writes must load: checked on a copy beside it, which then replaces it (a file that
    # did not load was rewritten before it was refused).
    tmp = path.with_name(f".{path.name}.tmp.yaml")
    try:
        tmp.write_text(header + yaml.safe_dump(raw, sort_keys=False, width=120))
        load_profiles(str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def entry(f: DifficultyFit | list[DifficultyFit], source: str, categories: dict[str, float] | None = None) -> dict:
    fs = f if isinstance(f, list) else [f]
    mean = lambda k: round(float(np.mean([getattr(x, k) for x in fs])), 3)  # noqa: E731
    d = {"difficulty_accuracy": mean("accuracy"), "difficulty_length": mean("length"),
         "length_shared": mean("shared"), "distractor_share": mean("distractor_share")}
    if categories:
        d["category_length"] = {str(c): round(float(x), 4) for c, x in sorted(categories.items())}
    d["sources"] = [f"experiments/fit_difficulty.py: {source}"]
    return d


def fit_datasets(data: Path = DEFAULT_DATA, profiles: Path = DEFAULT_PROFILES, out: Path = DEFAULT_REPORT,
                 seeds: int = 3) -> dict[str, DifficultyFit]:
    """Fit every trace source, write the `datasets` section into `profiles` and the report `out`."""
    data, profiles, out = Path(data), Path(profiles), Path(out)
    if not (data / "traces").is_dir():
        raise ConfigError(f"--data: {data}/traces not found; point --data at ../shared/data")
    try:   # the file it writes into must load now, not after the minutes of fitting
        load_profiles(str(profiles))
    except ConfigError as e:
        raise ConfigError(f"--profiles: {e}") from None

    fits = {}
    for name, (files, fmt, by_cat) in SOURCES.items():
        correct, lengths, groups, answers, n_options = matrices(data, files, fmt, by_cat)
        fits[name] = f = fit(correct, answers, lengths, n_options, groups, seeds=seeds)
        print(f"{name}: a = {f.accuracy:.3f}, rho = {f.length:.3f}, s = {f.shared:.3f}, d = {f.distractor_share:.3f} "
              f"({f.n_models} models, {f.n_questions} questions)", flush=True)
    section = {
        "mmlu_pro": entry(fits[HEALTH], f"{HEALTH}, {fits[HEALTH].n_questions} questions; category_length: "
                          f"mean length per category / overall on {MMLU} (their answers are not used for the "
                          "coupling: 16-23% of three models' answers are unparsed, which the answer model cannot "
                          "express, and its Fig. 7 check fails there)", category_length_ratios(data)),
        "medmcqa": entry(fits[MED], f"{MED}, {fits[MED].n_questions} questions"),
        "gpqa": entry([fits[MED], fits[HEALTH]], f"no trace on this dataset: mean of the fits on {MED} and {HEALTH}"),
        "aime24": entry([fits[MED], fits[HEALTH]], f"no trace on this dataset: mean of the fits on {MED} and {HEALTH}"),
    }
    write_section(profiles, section)
    write_report(out, fits, section)
    print(f"wrote datasets into {profiles} and {out}")
    return fits



def write_report(path: Path, fits: dict[str, DifficultyFit], section: dict) -> None:
    lines = ["# Difficulty coupling measured on real traces", "",
             "Regenerate: `python experiments/fit_difficulty.py` (reads ../shared/data; writes this file and the",
             "`datasets` section of `mosaic/profiles/data/paper_a100.yaml`). Model: `mosaic/profiles/difficulty.py`; estimators:",
             "`mosaic/fitting/difficulty.py`. a = IRT discrimination (`difficulty_accuracy`); d = share of wrong",
             "answers on the question's main distractor (`distractor_share`, from p = the share of both-wrong model",
             "pairs giving the same wrong answer); rho = length loading on difficulty (`difficulty_length`), fitted to",
             "the traces' length-agreement link (Spearman rho(agreement, mean length) over every triple of models);",
             "s = length loading on the question's verbosity (`length_shared`), from the cross-model length correlation.",
             "", "## Fits", "",
             "| traces | models | questions | a | d (p) | rho | rho from the length-correctness link (per model) | s | "
             "cross-model length corr | cross-model correctness phi |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, f in fits.items():
        lines.append(f"| {name} | {f.n_models} | {f.n_questions} | {f.accuracy:.2f} | {f.distractor_share:.2f} "
                     f"({f.same_wrong_share:.3f}) | {f.length:.2f} | "
                     f"{', '.join(f'{r:.2f}' for r in f.length_from_correctness)} | {f.shared:.2f} | "
                     f"{f.cross_length_corr:.3f} | {f.cross_correct_corr:.3f} |")
    lines += ["", "Before this fit the modelled workloads assumed a = 1.2, rho = 0.6, s = 0, d = 0.6 and no category "
              "length factor.", "", "Per dataset (profile `datasets` section):", "",
              "| dataset | a | rho | s | d | category length factors |", "|---|---|---|---|---|---|"]
    for ds, d in section.items():
        cats = d.get("category_length")
        lines.append(f"| {ds} | {d['difficulty_accuracy']} | {d['difficulty_length']} | {d['length_shared']} | "
                     f"{d['distractor_share']} | "
                     + (", ".join(f"{c} {x:.2f}" for c, x in cats.items()) if cats else "none") + " |")
    lines += ["", "## Check: Fig. 7 statistics of every triple of distinct trace models, traces vs the fitted model", "",
              "Mean over triples (simulated: other seeds than the fit's). Only the Spearman rho was fitted (through",
              "rho); the shares and relative lengths are not. Relative length = the bucket's mean per-question",
              "length / the overall mean.", "",
              "| traces | | Spearman rho | share 3:0 | 2:1 | 1:1:1 | rel. length 3:0 | 2:1 | 1:1:1 |",
              "|---|---|---|---|---|---|---|---|---|"]
    for name, f in fits.items():
        for label, row in (("traces", f.link_traces), ("fitted model", f.link_model)):
            lines.append(f"| {name} | {label} | {row[0]:.2f} | " + " | ".join(f"{100 * x:.1f}%" for x in row[1:4])
                         + " | " + " | ".join(f"{x:.2f}" for x in row[4:]) + " |")
    path.write_text("\n".join(lines) + "\n")
