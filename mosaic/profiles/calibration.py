"""A profile re-scaled to the machine it runs on, from a few of the profiler's own batches.

A full profile (experiments/profile_models.py) times hundreds of batches per model. Another host,
or the same host an hour later, differs from it by how fast it does each kind of work in a step,
and by its own load and start-up times. A profile check (mosaic/fidelity/profile_check.py), a
calibration (experiments/calibrate_profile.py) or a run with `workload.calibrate=true` times a few of
the profiler's batches per model (mosaic/backends/vllm/probe.py); from them:

- the step-cost terms are scaled by three factors, fitted by non-negative least squares in relative
  error as the profile itself was: `step` for the fixed cost of a step (the host's per-step overhead),
  `decode` for the per-sequence and decode-context terms, `prefill` for the per-token and
  prefill-attention terms. A host rarely drifts by one factor: a slower core stretches the work terms
  more than the per-step overhead, so small decode batches slow down less than large ones (on one
  host the work terms ran 6-7x slower than profiled and the per-step cost 1.3-1.5x).
  Of the fits (three factors; the step apart from the rest; one factor, the batches' median ratio)
  the one with the least median relative error over the batches is taken, among those whose factors
  the batches can tell apart;
- a model's load, unload and first-request warm-up times are the measured ones, the engine's
  worker start-up and per-request submit time the medians over the checked models.

The calibrated file keeps everything else of the profile (KV capacity, output lengths, tensor
parallelism, contention) and says what was scaled in a `calibration` section, which a run's
summary.json repeats.
"""
from __future__ import annotations

import copy
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from mosaic.profiles.loader import parse_profiles

# A measured window's step-model terms (sums over its steps) and the cost coefficient of each:
#   t = step_ms * steps + seq_ms * seqs + token_ms * tokens + ctx_ms * ctx + len2_ms * attn
FIT_TERMS = ("steps", "seqs", "tokens", "ctx", "attn")
COEFS = ("step_ms", "seq_ms", "token_ms", "ctx_ms", "len2_ms")

# The cost terms each factor scales (COEFS: the profile's step-cost fit, FIT_TERMS: what they multiply).
GROUPS = {"step": ("step_ms",), "decode": ("seq_ms", "ctx_ms"), "prefill": ("token_ms", "len2_ms")}
assert {t for g in GROUPS.values() for t in g} == set(COEFS)
# The fits tried, each a partition of GROUPS into factors fitted together; the one that explains the
# batches best (least median relative error) is taken.
FITS = ((("step",), ("decode",), ("prefill",)), (("step",), ("decode", "prefill")), (("step", "decode", "prefill"),))
HOW = {3: "three factors", 2: "two factors: step, the rest", 1: "one factor"}
# A factor is identifiable when some batch spends at least this share of its predicted time on its terms.
IDENTIFIABLE_SHARE = 0.1
# A factor further than this from the batches' median ratio is not a host's speed but a fit to noise.
# Far apart is real: on one host the per-step cost stayed as profiled (x1.0) while a prompt's prefill
# ran x20-30 slower, and a bound of 20 threw that fit away for one factor 47% off its batches.
MAX_FIT_DEPARTURE = 100.0


def predict_ms(cost: dict[str, float], row: dict[str, Any]) -> float:
    """The step model's milliseconds for a measured window (its FIT_TERMS)."""
    return sum(cost[c] * row[t] for c, t in zip(COEFS, FIT_TERMS))


def warmup_s(m: dict[str, Any], cost: dict[str, float]) -> float:
    """A fresh engine's one-off start of serving: the first request's time beyond what the step
    model gives for it (median over the workers that measured), >= 0."""
    return max(0.0, float(np.median([w["ms"] - predict_ms(cost, w) for w in m["warm"]]))) / 1e3


def _parts(cost: dict[str, float], row: dict[str, Any]) -> dict[str, float]:
    """A batch's predicted milliseconds split by GROUPS."""
    terms = dict(zip(COEFS, FIT_TERMS))
    return {g: sum(cost.get(c, 0.0) * row[terms[c]] for c in cs) for g, cs in GROUPS.items()}


def fit_scales(rows: list[dict[str, Any]], cost: dict[str, float]) -> dict[str, Any]:
    """{step, decode, prefill, how, error}: the factors by which `cost`'s GROUPS best explain the
    measured rows (each {steps, seqs, tokens, ctx, attn, ms}); how names the fit taken from FITS
    ("three factors", "two factors: step, the rest", "one factor": the median measured / predicted),
    error its median relative error over the rows."""
    from scipy.optimize import lsq_linear

    if not rows:
        raise ValueError("no measured batches to calibrate from")
    parts = [_parts(cost, r) for r in rows]
    ms = np.array([float(r["ms"]) for r in rows])
    total = np.array([sum(p.values()) for p in parts])
    if np.any(total <= 0):
        raise ValueError("the profile predicts no time for a measured batch: its step cost is empty")
    median = float(np.median(ms / total))
    best = ({g: median for g in GROUPS}, float(np.median(np.abs(median * total / ms - 1))), 1)
    for fit in FITS[:-1]:
        cols = np.array([[sum(p[g] for g in factor) for factor in fit] for p in parts])
        if not all((cols[:, j] / total >= IDENTIFIABLE_SHARE).any() for j in range(len(fit))):
            continue
        if np.linalg.matrix_rank(cols) < len(fit):   # batches of one shape: any split explains them
            continue
        # Least squares within MAX_FIT_DEPARTURE of the median: a factor the batches would push to
        # zero or past the bound stays at the bound, where the others still explain the batches (a
        # fit that was simply refused fell back to one factor, 49% off a host's batches).
        x = lsq_linear(cols / ms[:, None], np.ones(len(ms)),
                       bounds=(median / MAX_FIT_DEPARTURE, median * MAX_FIT_DEPARTURE)).x
        err = float(np.median(np.abs(cols @ x / ms - 1)))
        if err < best[1]:
            best = ({g: float(f) for factor, f in zip(fit, x) for g in factor}, err, len(fit))
    factors, err, n = best
    return {**factors, "how": HOW[n], "error": err}


def scaled_cost(cost: dict[str, float], scales: dict[str, Any]) -> dict[str, float]:
    """The step-cost terms times their kind's factor."""
    factor = {t: scales[g] for g, ts in GROUPS.items() for t in ts}
    return {k: float(f"{v * factor[k]:.6g}") for k, v in cost.items()}


def calibrated_profile(raw: dict[str, Any], check: dict[str, Any], base: str,
                       by: str = "experiments/calibrate_profile.py") -> dict[str, Any]:
    """A copy of the profile file `raw` (its parsed YAML) with each model the check measured
    re-scaled to this machine (the module's rules); `base` names the profile in the record, `by`
    what calibrated it. Models the check did not measure are kept as they were, and the record
    says which were."""
    out = copy.deepcopy(raw)
    record: dict[str, Any] = {}
    for name, m in check["models"].items():
        entry = out["models"].get(name)
        if entry is None or not entry.get("cost"):
            raise ValueError(f"model {name}: not in the profile {base} with a measured step cost")
        # a check written before it fitted factors: its one ratio
        scales = m.get("scales") or {**{g: m["ratio"] for g in GROUPS}, "how": "one factor"}
        entry["cost"] = scaled_cost(entry["cost"], scales)
        load_ratio = m["load_s"] / entry["load_time_s"] if entry.get("load_time_s") else 1.0
        entry["load_time_s"] = round(m["load_s"], 3)
        entry["unload_time_s"] = round(m.get("unload_s", entry.get("unload_time_s", 0.0) * load_ratio), 3)
        if m.get("warmup_s") is not None:
            entry["warmup_s"] = round(m["warmup_s"], 3)
        note = (f"calibrated by {by} ({check['when']}) from {base}: step cost "
                + ", ".join(f"{g} terms x{scales[g]:.3f}" for g in GROUPS)
                + f" ({scales['how']}" + (f", fit error median {scales['error']:.1%}" if "error" in scales else "")
                + f"); load {m['load_s']:.1f} s; spread over repeats ±{m['spread']:.0%}")
        entry["sources"] = [note, *entry.get("sources", [])]
        record[name] = {**{g: round(scales[g], 4) for g in GROUPS}, "how": scales["how"],
                        **({"error": round(scales["error"], 4)} if "error" in scales else {}), "ratio": round(m["ratio"], 4), "spread": round(m["spread"], 4),
                        "load_s": round(m["load_s"], 3),
                        "workers": {w: round(x, 4) for w, x in m.get("workers", {}).items()}}
    engine = out["engine"]
    for key, field in (("startup_s", "worker_startup_s"), ("submit_ms", "submit_ms")):
        values = [m[key] for m in check["models"].values() if m.get(key) is not None]
        if values and field in engine:
            engine[field] = round(float(statistics.median(values)), 4)
    tolerance = {"tolerance": check["tolerance"]} if check.get("tolerance") is not None else {}
    out["calibration"] = {"base": base, "by": by, "when": check["when"], **tolerance,
                          "kept": sorted(set(out["models"]) - set(record)), "models": record}
    return out



def calibrated_file(path: Path, raw: dict[str, Any], check: dict[str, Any], name: str,
                    by: str = "experiments/calibrate_profile.py") -> dict[str, Any]:
    """calibrated_profile of the profile file at `path` (its YAML `raw`, named `name`), made to load
    from any folder (its relative `engine.kernels` made absolute) and validated as any profile file
    is. A calibrated profile calibrated again names the profile it all came from as its base."""
    earlier = raw.get("calibration")
    base = (earlier.get("base") if isinstance(earlier, dict) else None) or name
    out = calibrated_profile(raw, check, base, by)
    kernels = out["engine"].get("kernels")
    if kernels and not Path(kernels).is_absolute():   # the calibrated file is written elsewhere
        out["engine"]["kernels"] = str((path.parent / kernels).resolve())
    parse_profiles(out, "the calibrated profile", path.parent)   # a file any run can load, or an error here
    return out


def calibrated_yaml(data: dict[str, Any]) -> str:
    """A calibrated profile (calibrated_file's) as the text of its file, headed by what made it."""
    import yaml

    return (f"# Calibrated by {data['calibration']['by']}: the base profile's step costs, load and start-up times\n"
            "# scaled by a few batches timed on this machine (its `calibration` section says by what).\n"
            + yaml.safe_dump(data, sort_keys=False, width=100))


def compare_rows(rows: list[dict[str, Any]], cost: dict[str, float]) -> dict[str, Any]:
    """Measured / predicted per batch row; per cell, per kind of cell (decode, prefill, mixed) and per
    worker the median, overall the median and its spread over repeats (half the range of the per-repeat
    medians, relative to the median)."""
    ratios = [(r["cell"], r["rep"], r["ms"] / predict_ms(cost, r)) for r in rows]
    cells: dict[str, list[float]] = {}
    reps: dict[int, list[float]] = {}
    kinds: dict[str, list[float]] = {}
    workers: dict[int, list[float]] = {}
    for r, (cell, rep, x) in zip(rows, ratios):
        cells.setdefault(cell, []).append(x)
        reps.setdefault(rep, []).append(x)
        kinds.setdefault(r.get("kind", "decode"), []).append(x)
        workers.setdefault(int(r.get("worker", 0)), []).append(x)
    med = statistics.median(x for _, _, x in ratios)
    rep_meds = [statistics.median(v) for v in reps.values()]
    return {"ratio": med, "spread": (max(rep_meds) - min(rep_meds)) / 2 / med if len(rep_meds) > 1 else 0.0,
            "cells": {c: statistics.median(v) for c, v in cells.items()},
            "kinds": {k: statistics.median(v) for k, v in kinds.items()},
            # per worker: a host whose cores run at different speeds (a busy co-tenant on one) shows here
            "workers": {str(w): statistics.median(v) for w, v in sorted(workers.items())}}


def measured_model(measured: dict[str, Any], cost: dict[str, float], profile_load_s: float) -> dict[str, Any]:
    """One model's entry of a check: its batches against the profile's step cost `cost`
    (compare_rows), the factors a calibration scales it by, the one-off times as measured, and the
    timed rows (so that a calibration can be fitted again from the check alone)."""
    scales = fit_scales(measured["steps"], cost)
    return {**compare_rows(measured["steps"], cost), "load_s": measured["load_time_s"],
            "profile_load_s": profile_load_s, "scales": scales, "startup_s": measured["startup_s"],
            "unload_s": measured["unload_time_s"], "warmup_s": warmup_s(measured, scaled_cost(cost, scales)),
            "submit_ms": measured["submit_ms"],
            "rows": [{k: r[k] for k in ("kind", "cell", "rep", "worker", *FIT_TERMS, "ms") if k in r}
                     for r in measured["steps"]]}

