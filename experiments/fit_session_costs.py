"""Fit each model's session-time regression T_m(N, mean, max) on the simulator's engine model.

    python experiments/fit_session_costs.py [--profiles mosaic/profiles/data/paper_a100.yaml] [--models LlamaR1,...]

The paper fits T_m per model from a short multi-N profiling sweep on the calibration set (4.1.2).
Here the "engine" is sim/engine.py's BatchEngine with the profile's cost model and KV capacity on
one GPU of the profile's memory: for every model, every output-length distribution it has (one per
dataset, plus the default), and N in NS, a calibration set of the dataset's calibration size is
drawn (its mean and max are the regression's inputs) and a session of N fresh lengths is run.
An extra group with long prompts covers aggregator sessions (question + the experts' answers).

Every form in mosaic/session_fit.FORMS is fitted; held-out error is leave-one-N-out (each N's
sessions predicted by a fit that never saw that N). The form with the lowest median held-out error
is written into the profile file as the model's `session_fit`, the other forms' errors printed.
experiments/profile.py runs the same sweep on a real engine (vllm_backend.profiler.session_runner).
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mosaic.profiles import CostModel, ModelProfile, ProfileSet, kv_capacity_tokens, load_profiles  # noqa: E402
from mosaic.fitting.session_costs import FORMS, SessionSample, select, sweep, to_yaml  # noqa: E402
from mosaic.workload.calibration import CALIBRATION_SIZES, DEFAULT_SIZE  # noqa: E402
from sim.engine import BatchEngine  # noqa: E402

NS = (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
REPS = 3
SEED = 0
# Median question prompt per dataset (synthetic.PRESETS; AIME problems are short statements).
PROMPTS = {"default": 200.0, "mmlu_pro": 260.0, "medmcqa": 120.0, "gpqa": 300.0, "aime24": 150.0}
AGGREGATOR_PROMPT = 4000.0   # question + three experts' answers, order of magnitude (pipeline.py)


def engine_session(model: ModelProfile, profiles: ProfileSet, memory_gib: float):
    """(prompts, outputs) -> wall seconds of one session on the simulator's engine model."""
    engine = profiles.engine
    kv = kv_capacity_tokens(model, engine, memory_gib)
    cost = CostModel(model, engine)

    def run(prompts: np.ndarray, outputs: np.ndarray) -> float:
        batch = [(str(i), int(p), int(o)) for i, (p, o) in enumerate(zip(prompts, outputs))]
        eng = BatchEngine(cost, kv, engine.max_num_seqs, engine.max_num_batched_tokens)
        clock = 0.0
        for dt in eng.run(batch, lambda: clock):
            clock += dt
        return clock

    return run, kv


def model_samples(name: str, profiles: ProfileSet, rng: np.random.Generator, ns=NS, reps=REPS
                  ) -> tuple[list[SessionSample], int]:
    model = profiles.model(name)
    run, kv = engine_session(model, profiles, profiles.engine.memory_gib)
    dists = {"default": model.output, **model.outputs}
    sizes = {d: CALIBRATION_SIZES.get(d, DEFAULT_SIZE) for d in dists}
    max_len = profiles.engine.max_model_len
    samples = sweep(run, dists, PROMPTS, ns, reps, sizes, rng, max_len)
    samples += sweep(run, {"aggregator": model.output}, {"aggregator": AGGREGATOR_PROMPT}, ns, 1,
                     DEFAULT_SIZE, rng, max_len)
    return samples, kv


def write_fits(path: Path, fits: dict[str, dict]) -> None:
    """Put each model's `session_fit` into the profile file, keeping its header comment."""
    text = path.read_text()
    header = "".join(re.match(r"((?:#[^\n]*\n)*)", text).group(1))
    raw = yaml.safe_load(text)
    for name, fit in fits.items():
        raw["models"][name]["session_fit"] = fit
    path.write_text(header + yaml.safe_dump(raw, sort_keys=False, width=120))
    load_profiles(str(path))   # what we wrote must load


def fit_file(path: Path, names: list[str] | None = None, ns=NS, reps=REPS) -> dict[str, dict]:
    """Fit every (or the named) model of the profile file at `path` and write the fits into it."""
    profiles = load_profiles(str(path))
    names = names or list(profiles.models)
    source = (f"simulator engine sweep (sim/engine.py, {profiles.engine.device} profile): N in {list(ns)}, "
              f"{reps} calibration draws per dataset distribution + a long-prompt group; error on held-out N "
              "(leave one N out)")
    fits = {}
    print(f"session-time regression, held-out |predicted/simulated - 1| median / max per form:")
    print(f"  {'model':<30} " + "  ".join(f"{f:>17}" for f in FORMS))
    for i, name in enumerate(names):
        t0 = time.time()
        samples, kv = model_samples(name, profiles, np.random.default_rng([SEED, i]), ns, reps)
        best, all_fits = select(samples, kv, profiles.engine.max_num_seqs, source)
        fits[name] = to_yaml(best)
        print(f"  {name:<30} " + "  ".join(f"{f.error_median:7.1%} /{f.error_max:7.1%}" for f in all_fits.values())
              + f"   -> {best.form} ({len(samples)} sessions, {time.time() - t0:.1f} s)", flush=True)
    write_fits(path, fits)
    print(f"wrote session_fit for {len(fits)} models into {path}")
    return fits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profiles", type=Path, default=ROOT / "mosaic" / "data" / "paper_a100.yaml")
    ap.add_argument("--models", default="", help="comma-separated; default: every model in the file")
    args = ap.parse_args()
    fit_file(args.profiles, [m for m in args.models.split(",") if m] or None)


if __name__ == "__main__":
    main()
