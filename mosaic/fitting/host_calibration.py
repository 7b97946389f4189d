"""A profile re-scaled to the machine it runs on, from a profile check's few batches.

A full profile (experiments/profile_models.py) times hundreds of batches per model. Another host
of the same kind, or the same host an hour later, differs from it mostly by a factor on the step
time, and by its own load and start-up times. The profile check (mosaic/fidelity/profile_check.py)
times a few of the profiler's own batches per model on every worker; from them:

- the step-cost terms are scaled by two factors, fitted by non-negative least squares in relative
  error as the profile itself was: `decode` for the per-step, per-sequence and decode-context terms,
  `prefill` for the per-token and prefill-attention terms. Where the batches cannot tell the two
  apart (only one kind timed), or the fit lands far from the batches' median ratio, both are that
  median: one factor, as the check reports it;
- a model's load, unload and first-request warm-up times are the measured ones, the engine's
  worker start-up and per-request submit time the medians over the checked models.

The calibrated file keeps everything else of the profile (KV capacity, output lengths, tensor
parallelism, contention) and says what was scaled in a `calibration` section, which a run's
summary.json repeats.
"""
from __future__ import annotations

import copy
import statistics
from typing import Any

import numpy as np

from mosaic.fitting.real_engine import COEFS, FIT_TERMS

DECODE_TERMS = ("step_ms", "seq_ms", "ctx_ms")
PREFILL_TERMS = ("token_ms", "len2_ms")
assert set(DECODE_TERMS) | set(PREFILL_TERMS) == set(COEFS)
# A kind of term is identifiable when some batch spends at least this share of its predicted time on it.
IDENTIFIABLE_SHARE = 0.5
# A two-factor fit further than this factor from the median ratio is a fit to noise: one factor instead.
MAX_FIT_DEPARTURE = 3.0


def _parts(cost: dict[str, float], row: dict[str, Any]) -> tuple[float, float]:
    """A batch's predicted milliseconds split into its decode-like and prefill-like terms."""
    terms = dict(zip(COEFS, FIT_TERMS))
    decode = sum(cost.get(c, 0.0) * row[terms[c]] for c in DECODE_TERMS)
    prefill = sum(cost.get(c, 0.0) * row[terms[c]] for c in PREFILL_TERMS)
    return decode, prefill


def fit_scales(rows: list[dict[str, Any]], cost: dict[str, float]) -> dict[str, Any]:
    """{decode, prefill, how}: the factors by which `cost`'s terms best explain the measured rows
    (each {steps, seqs, tokens, ctx, attn, ms}); how = "two factors" or "one factor" (the median
    measured / predicted, where the rows cannot separate the two kinds)."""
    from scipy.optimize import nnls

    if not rows:
        raise ValueError("no measured batches to calibrate from")
    parts = np.array([_parts(cost, r) for r in rows], dtype=float)
    ms = np.array([float(r["ms"]) for r in rows])
    total = parts.sum(axis=1)
    if np.any(total <= 0):
        raise ValueError("the profile predicts no time for a measured batch: its step cost is empty")
    median = float(np.median(ms / total))
    one = {"decode": median, "prefill": median, "how": "one factor"}
    share = parts / total[:, None]
    if not (share[:, 0] >= IDENTIFIABLE_SHARE).any() or not (share[:, 1] >= IDENTIFIABLE_SHARE).any():
        return one
    x, _ = nnls(parts / ms[:, None], np.ones(len(ms)))
    if np.any(x <= 0) or np.any(x / median > MAX_FIT_DEPARTURE) or np.any(median / x > MAX_FIT_DEPARTURE):
        return one
    return {"decode": float(x[0]), "prefill": float(x[1]), "how": "two factors"}


def scaled_cost(cost: dict[str, float], scales: dict[str, Any]) -> dict[str, float]:
    """The step-cost terms times their kind's factor."""
    return {k: float(f"{v * (scales['decode'] if k in DECODE_TERMS else scales['prefill']):.6g}")
            for k, v in cost.items()}


def calibrated_profile(raw: dict[str, Any], check: dict[str, Any], base: str) -> dict[str, Any]:
    """A copy of the profile file `raw` (its parsed YAML) with each model the check measured
    re-scaled to this machine (the module's rules); `base` names the profile in the record.
    Models the check did not measure are kept as they were, and the record says which were."""
    out = copy.deepcopy(raw)
    record: dict[str, Any] = {}
    for name, m in check["models"].items():
        entry = out["models"].get(name)
        if entry is None or not entry.get("cost"):
            raise ValueError(f"model {name}: not in the profile {base} with a measured step cost")
        # a check from before the two factors were fitted: its one ratio
        scales = m.get("scales") or {"decode": m["ratio"], "prefill": m["ratio"], "how": "one factor"}
        entry["cost"] = scaled_cost(entry["cost"], scales)
        load_ratio = m["load_s"] / entry["load_time_s"] if entry.get("load_time_s") else 1.0
        entry["load_time_s"] = round(m["load_s"], 3)
        entry["unload_time_s"] = round(m.get("unload_s", entry.get("unload_time_s", 0.0) * load_ratio), 3)
        if m.get("warmup_s") is not None:
            entry["warmup_s"] = round(m["warmup_s"], 3)
        note = (f"calibrated by experiments/calibrate_profile.py ({check['when']}) from {base}: step cost x"
                f"{scales['decode']:.3f} (decode terms), x{scales['prefill']:.3f} (prefill terms), {scales['how']}; "
                f"load {m['load_s']:.1f} s; spread over repeats ±{m['spread']:.0%}")
        entry["sources"] = [note, *entry.get("sources", [])]
        record[name] = {"decode": round(scales["decode"], 4), "prefill": round(scales["prefill"], 4),
                        "how": scales["how"], "ratio": round(m["ratio"], 4), "spread": round(m["spread"], 4),
                        "load_s": round(m["load_s"], 3),
                        "workers": {w: round(x, 4) for w, x in m.get("workers", {}).items()}}
    engine = out["engine"]
    for key, field in (("startup_s", "worker_startup_s"), ("submit_ms", "submit_ms")):
        values = [m[key] for m in check["models"].values() if m.get(key) is not None]
        if values and field in engine:
            engine[field] = round(float(statistics.median(values)), 4)
    out["calibration"] = {"base": base, "when": check["when"], "tolerance": check.get("tolerance"),
                          "kept": sorted(set(out["models"]) - set(record)), "models": record}
    return out


def describe(calibration: dict[str, Any] | None) -> str:
    """One line for a console: which profile was calibrated when, and its factors per model."""
    if not calibration:
        return ""
    per = ", ".join(f"{n} x{m['decode']:.2f}/{m['prefill']:.2f}" for n, m in calibration["models"].items())
    return (f"profile calibrated from {calibration['base']} ({calibration['when']}): step cost decode/prefill "
            f"{per}")
