"""A profile re-scaled to the machine it runs on, from a profile check's few batches.

A full profile (experiments/profile_models.py) times hundreds of batches per model. Another host,
or the same host an hour later, differs from it by how fast it does each kind of work in a step,
and by its own load and start-up times. The profile check (mosaic/fidelity/profile_check.py) times
a few of the profiler's own batches per model; from them:

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
from typing import Any

import numpy as np

from mosaic.fitting.real_engine import COEFS, FIT_TERMS

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
MAX_FIT_DEPARTURE = 20.0


def _parts(cost: dict[str, float], row: dict[str, Any]) -> dict[str, float]:
    """A batch's predicted milliseconds split by GROUPS."""
    terms = dict(zip(COEFS, FIT_TERMS))
    return {g: sum(cost.get(c, 0.0) * row[terms[c]] for c in cs) for g, cs in GROUPS.items()}


def fit_scales(rows: list[dict[str, Any]], cost: dict[str, float]) -> dict[str, Any]:
    """{step, decode, prefill, how, error}: the factors by which `cost`'s GROUPS best explain the
    measured rows (each {steps, seqs, tokens, ctx, attn, ms}); how names the fit taken from FITS
    ("three factors", "two factors: step, the rest", "one factor": the median measured / predicted),
    error its median relative error over the rows."""
    from scipy.optimize import nnls

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
        x, _ = nnls(cols / ms[:, None], np.ones(len(ms)))
        if np.any(x <= 0) or np.any(x / median > MAX_FIT_DEPARTURE) or np.any(median / x > MAX_FIT_DEPARTURE):
            continue
        err = float(np.median(np.abs(cols @ x / ms - 1)))
        if err < best[1]:
            best = ({g: float(f) for factor, f in zip(fit, x) for g in factor}, err, len(fit))
    factors, err, n = best
    return {**factors, "how": HOW[n], "error": err}


def scaled_cost(cost: dict[str, float], scales: dict[str, Any]) -> dict[str, float]:
    """The step-cost terms times their kind's factor."""
    factor = {t: scales[g] for g, ts in GROUPS.items() for t in ts}
    return {k: float(f"{v * factor[k]:.6g}") for k, v in cost.items()}


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
        # a check written before it fitted factors: its one ratio
        scales = m.get("scales") or {**{g: m["ratio"] for g in GROUPS}, "how": "one factor"}
        entry["cost"] = scaled_cost(entry["cost"], scales)
        load_ratio = m["load_s"] / entry["load_time_s"] if entry.get("load_time_s") else 1.0
        entry["load_time_s"] = round(m["load_s"], 3)
        entry["unload_time_s"] = round(m.get("unload_s", entry.get("unload_time_s", 0.0) * load_ratio), 3)
        if m.get("warmup_s") is not None:
            entry["warmup_s"] = round(m["warmup_s"], 3)
        note = (f"calibrated by experiments/calibrate_profile.py ({check['when']}) from {base}: step cost "
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
    out["calibration"] = {"base": base, "when": check["when"], "tolerance": check.get("tolerance"),
                          "kept": sorted(set(out["models"]) - set(record)), "models": record}
    return out

