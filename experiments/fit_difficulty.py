"""Measure how question difficulty couples answers and lengths, on real traces, per dataset.

    python experiments/fit_difficulty.py [--data ../shared/data] [--profiles mosaic/profiles/data/paper_a100.yaml]

Fits mosaic/profiles/difficulty.py's model (mosaic.fitting.difficulty) to the traces in
../shared/data and writes the `datasets` section of the profile file (keeping everything else):

* mmlu_pro: the reasoning models of MedAgentsBench on MMLU-Pro's health questions (724 all four
  answered); `category_length` = each category's mean length / the overall mean on the five 7-8B
  instruct models' MMLU-Pro CoT traces (experiments/fit_profiles.category_length_ratios). Those
  instruct traces are fitted and reported too (grouped by category) but not used for the coupling:
  16-23% of three of the models' answers are unparsed (no "The answer is"), which the answer
  model has no place for, and the fitted model fails the Fig. 7 check there.
* medmcqa: the reasoning models of MedAgentsBench on MedMCQA (DeepSeek-R1, QwQ-32B-Preview,
  o1-mini, o3-mini; 2,807 questions).
* gpqa, aime24: no trace of any model on them exists here; they get the mean of the two reasoning
  fits (MedMCQA and MMLU-Pro health), as the paper's pool answers them with its reasoning experts.

Then checks the fit on what was not fitted: the agreement bucket shares and the mean length per
bucket (relative to the overall mean) of every triple of distinct trace models, measured on the
traces and simulated under the fit. Writes results/difficulty_fit.md.
Run after experiments/fit_profiles.py, which rewrites the profile file from scratch. About 5 minutes.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from experiments.fit_profiles import INSTRUCT_TRACES, REASONING, category_length_ratios  # noqa: E402
from mosaic.profiles import load_profiles  # noqa: E402
from mosaic.fitting.difficulty import DifficultyFit, fit  # noqa: E402
from mosaic.workload.sources.recorded_files import read_trace  # noqa: E402

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
    path.write_text(header + yaml.safe_dump(raw, sort_keys=False, width=120))
    load_profiles(str(path))   # what we wrote must load


def entry(f: DifficultyFit | list[DifficultyFit], source: str, categories: dict[str, float] | None = None) -> dict:
    fs = f if isinstance(f, list) else [f]
    mean = lambda k: round(float(np.mean([getattr(x, k) for x in fs])), 3)  # noqa: E731
    d = {"difficulty_accuracy": mean("accuracy"), "difficulty_length": mean("length"),
         "length_shared": mean("shared"), "distractor_share": mean("distractor_share")}
    if categories:
        d["category_length"] = {str(c): round(float(x), 4) for c, x in sorted(categories.items())}
    d["sources"] = [f"experiments/fit_difficulty.py: {source}"]
    return d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--profiles", type=Path, default=ROOT / "mosaic" / "data" / "paper_a100.yaml")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "difficulty_fit.md")
    ap.add_argument("--seeds", type=int, default=3, help="simulated replicates for the Fig. 7 check")
    args = ap.parse_args()
    if not (args.data / "traces").is_dir():
        sys.exit(f"--data: {args.data}/traces not found; point --data at ../shared/data")

    fits = {}
    for name, (files, fmt, by_cat) in SOURCES.items():
        correct, lengths, groups, answers, n_options = matrices(args.data, files, fmt, by_cat)
        fits[name] = f = fit(correct, answers, lengths, n_options, groups, seeds=args.seeds)
        print(f"{name}: a = {f.accuracy:.3f}, rho = {f.length:.3f}, s = {f.shared:.3f}, d = {f.distractor_share:.3f} "
              f"({f.n_models} models, {f.n_questions} questions)", flush=True)
    section = {
        "mmlu_pro": entry(fits[HEALTH], f"{HEALTH}, {fits[HEALTH].n_questions} questions; category_length: "
                          f"mean length per category / overall on {MMLU} (their answers are not used for the "
                          "coupling: 16-23% of three models' answers are unparsed, which the answer model cannot "
                          "express, and its Fig. 7 check fails there)", category_length_ratios(args.data)),
        "medmcqa": entry(fits[MED], f"{MED}, {fits[MED].n_questions} questions"),
        "gpqa": entry([fits[MED], fits[HEALTH]], f"no trace on this dataset: mean of the fits on {MED} and {HEALTH}"),
        "aime24": entry([fits[MED], fits[HEALTH]], f"no trace on this dataset: mean of the fits on {MED} and {HEALTH}"),
    }
    write_section(args.profiles, section)
    write_report(args.out, fits, section)
    print(f"wrote datasets into {args.profiles} and {args.out}")


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


if __name__ == "__main__":
    main()
