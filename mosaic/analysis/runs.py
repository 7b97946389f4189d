"""Any sweep's runs as one pandas DataFrame: one row per finished run, a column per override.

    from mosaic.analysis import load_runs
    df = load_runs("multirun/DATE/TIME")     # or a single run's folder
    df.groupby("scheduler.name")["end_to_end_s"].mean()

Columns: `run_dir`; one column per override (`cluster.n_workers`, `scheduler`, ... as typed on the
command line, values parsed as YAML scalars); every scalar of summary.json, nested ones flattened
with dots (`serving.expert.latency_s.p90`); `git_commit` and `wall_s` from its provenance. Failed and
unfinished runs are left out (`finished_runs`), listed in `df.attrs["skipped"]`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from mosaic.core import serde
from mosaic.core.rundir import ERROR_FILE, SUMMARY_FILE, one_line, read_failure, read_run_dir, summary_problem

# Nested summary parts that are not per-run scalars (lists, the whole config): left out of the table.
_LEFT_OUT = ("workers", "provenance", "expert_requests_per_model", "data_report")


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level, keys joined by dots (`serving.expert.latency_s.p90`); lists and
    scalars are values."""
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _overrides(summary: dict[str, Any], run_dir: Path) -> list[str]:
    prov = summary.get("provenance") or {}
    if "overrides" in prov:
        return list(prov["overrides"])
    hydra = run_dir / ".hydra" / "overrides.yaml"     # runs from before provenance was recorded
    if hydra.is_file():
        return [str(o) for o in (yaml.safe_load(hydra.read_text()) or [])]
    return []


def _parse(value: str) -> Any:
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        return value


_NON_FINITE = ("inf", "-inf", "nan")   # how a summary writes a non-finite float (mosaic/core/serde.py)


# Parts of a summary the package writes as mappings (or null): a list or a scalar in their place
# would leave the table without their columns, without a word.
_MAPPINGS = {"settings": "the policy's settings", "serving": "the stages' serving metrics",
             "aggregation": "the aggregation settings", "engine": "the engine settings",
             "admission": "the admission counts", "solver": "the solver's report",
             "aggregator_solver": "the solver's report", "aggregator_tp_scaling": "the TP scaling",
             "provenance": "the run's provenance", "data_report": "the data report",
             "expert_requests_per_model": "request counts by model", "topology": "the topology settings"}


def damaged(summary: dict[str, Any]) -> str | None:
    """What is wrong with a summary.json that was changed since its run wrote it, in one phrase
    naming the field (None if nothing): the run's identity not text and an integer seed, a time
    (a key ending in _s, at any depth) not a number."""
    why = summary_problem(summary)
    if why:
        return why
    for key in ("scheduler", "workload"):
        if not isinstance(summary[key], str):
            return f"{key} is {summary[key]!r}, not a name"
    if not isinstance(summary["seed"], int) or isinstance(summary["seed"], bool):
        return f"seed is {summary['seed']!r}, not an integer"
    for key, value in flatten({k: v for k, v in summary.items() if k not in _LEFT_OUT}).items():
        if any(part.endswith("_s") for part in key.split(".")) and not (
                value is None or value in _NON_FINITE
                or (isinstance(value, (int, float)) and not isinstance(value, bool))):
            return f"{key} is {value!r}, not a number of seconds"
    for key, value in summary.items():
        if key.startswith("n_") and value is not None and not (
                isinstance(value, int) and not isinstance(value, bool) and value >= 0):
            return f"{key} is {value!r}, not a count (an integer >= 0)"
        if key.endswith("_s") and isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
            return f"{key} is {value!r}, a negative time"
        if (key.startswith("accuracy") or key == "skip_rate") and value is not None and not (
                isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1):
            return f"{key} is {value!r}, not a fraction in [0, 1]"
    for key, what in _MAPPINGS.items():
        if summary.get(key) is not None and not isinstance(summary[key], dict):
            return f"{key} is {one_line(repr(summary[key]), 60)}, not a mapping of {what}"
    for stage, value in (summary.get("serving") or {}).items():
        if value is not None and not isinstance(value, dict):
            return f"serving.{stage} is {one_line(repr(value), 60)}, not a mapping of its serving metrics"
    return None


def finished_runs(sweep: Path) -> tuple[list[dict[str, Any]], list[tuple[Path, str]]]:
    """The finished runs under `sweep` (each summary.json, with its directory under `_dir`) and the
    skipped ones, each with why: it recorded a failure (error.json, even beside a summary.json:
    its outputs are kept for inspection only), its summary.json is unreadable, or it is a job
    directory (.hydra/) without a summary.json."""
    sweep = Path(sweep)
    dirs = {p.parent for name in (SUMMARY_FILE, ERROR_FILE) for p in sweep.rglob(name)}
    dirs |= {p.parent for p in sweep.rglob(".hydra") if p.is_dir()}
    runs, skipped = [], []
    for d in sorted(dirs):
        if (d / ERROR_FILE).exists():
            rec = read_failure(d / ERROR_FILE)
            said = rec.get("error") or rec.get("message") or "no message recorded"   # message: a hand-written record
            why = f"failed (exit {rec.get('exit_code')}, stage {rec.get('stage') or '?'}): {said}"
        elif not (d / SUMMARY_FILE).exists():
            why = "no summary.json (the run did not finish)"
        else:
            try:
                s = serde.loads_strict((d / SUMMARY_FILE).read_text())
            except (OSError, ValueError) as e:
                skipped.append((d, f"unreadable summary.json ({e})"))
                continue
            if not isinstance(s, dict) or not {"scheduler", "workload", "seed"} <= set(s):
                skipped.append((d, "summary.json is not a run's summary (no scheduler, workload and seed)"))
                continue
            wrong = damaged(s)
            if wrong:
                skipped.append((d, f"summary.json is damaged: {wrong}; rerun the run"))
                continue
            s["_dir"] = str(d)
            runs.append(s)
            continue
        skipped.append((d, one_line(why, 300)))
    return runs, skipped


def override_columns(df: pd.DataFrame) -> list[str]:
    """The columns load_runs made from the runs' command-line overrides, in order of first use."""
    return list(df.attrs.get("overrides", []))


def load_runs(sweep: str | Path) -> pd.DataFrame:
    """The finished runs under `sweep` as one table (the module docstring says what is in it)."""
    return runs_table(*finished_runs(Path(sweep)))


def runs_table(runs: list[dict[str, Any]], skipped: list[tuple[Path, str]] = ()) -> pd.DataFrame:
    """The table of load_runs from finished_runs' summaries (each with its `_dir`), which are left
    as they are."""
    overrides: dict[str, None] = {}
    rows = []
    for s in runs:
        d = Path(s["_dir"])
        s = {k: v for k, v in s.items() if not k.startswith("_")}
        row: dict[str, Any] = {"run_dir": str(d)}
        for o in _overrides(s, d):
            key, _, value = o.lstrip("+~").partition("=")
            row[key] = _parse(value)
            overrides.setdefault(key)
        flat = flatten({k: v for k, v in s.items() if k not in _LEFT_OUT})
        row.update({k: v for k, v in flat.items() if k not in row})
        prov = s.get("provenance") or {}
        row["git_commit"] = (prov.get("git") or {}).get("commit")
        row["wall_s"] = prov.get("wall_s")
        rows.append(row)
    df = pd.DataFrame(rows)
    df.attrs["skipped"] = [(str(d), why) for d, why in skipped]
    df.attrs["overrides"] = [k for k in overrides if k not in ("hydra.run.dir", "hydra.sweep.dir")]
    return df


# trace.csv's columns that are text: read as such (an answer "1" stays "1", an empty error is "").
_TEXT_COLUMNS = ("request_id", "query_id", "model", "stage", "answer", "error", "text")


def _trace(run_dir: Path) -> pd.DataFrame:
    """A run's trace.csv, typed; ValueError, one line naming the file (and the line and column),
    where it is missing or was changed since its run wrote it (mosaic/core/rundir.py read_run_dir, the
    check every reader of a run's tables makes)."""
    path = run_dir / "trace.csv"
    if not path.is_file():
        raise ValueError(f"{path}: no such file, so the run's requests cannot be listed; rerun the run or move "
                         f"its folder out of the sweep")
    try:
        rows = read_run_dir(run_dir, ("trace.csv",))[1]["trace.csv"]
    except FileNotFoundError as e:   # summary.json gone since the runs table was read
        raise ValueError(str(e)) from None
    t = pd.DataFrame(rows)
    # Text stays text (an answer "1" stays "1", an empty error is ""); every other column is typed
    # as numbers where all of it reads as numbers, a blank (a request that never ran) as NaN.
    for col in t.columns:
        if col in _TEXT_COLUMNS:
            continue
        try:
            t[col] = pd.to_numeric(t[col].where(t[col] != ""))
        except (ValueError, TypeError):
            pass
    return t


def load_requests(sweep: str | Path, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every request of every finished run under `sweep` as one table: each run's trace.csv rows
    (docs/outputs.md) with its `run_dir` and override columns in front. `runs`: load_runs(sweep),
    if already read. A whole sweep's requests (a million rows for the paper sweep) are best kept as
    Parquet: `mosaic runs DIR --requests FILE.parquet`."""
    runs = load_runs(sweep) if runs is None else runs
    keys = ["run_dir", *override_columns(runs)]
    parts = []
    for _, run in runs.iterrows():
        t = _trace(Path(run["run_dir"]))
        for k in reversed(keys):
            v = run[k] if k in run else None
            # a list-valued override (topology.agents=[...]) is one value per row, not a column to align
            t.insert(0, k, pd.Series([v] * len(t), dtype=object) if isinstance(v, (list, tuple, dict)) else v)
        parts.append(t)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=keys)


def write_table(df: pd.DataFrame, path: str | Path) -> None:
    """`df` as Parquet (by the name's .parquet) or CSV. A column of mixed kinds (an override that is
    a number in one run and text in another) is written as text: Parquet columns have one type."""
    path = Path(path)
    if path.suffix != ".parquet":
        df.to_csv(path, index=False, lineterminator="\n")
        return
    out = df.copy()
    for c in out.columns[out.dtypes == object]:
        kinds = {type(v) for v in out[c] if v is not None and v == v}
        if len(kinds) > 1 or (kinds and not kinds <= {str, bool}):
            out[c] = [None if v is None or v != v else str(v) for v in out[c]]
    out.to_parquet(path, index=False)
