"""When each query of an online run arrives: seconds from the first possible arrival, one per
query in workload order, the same for the same seed (arrivals' own generator stream).

poisson: exponential gaps of mean 1/rate. gamma: gamma gaps of mean 1/rate and coefficient of
variation cv (shape 1/cv^2), bursts for cv > 1. trace: the i-th query arrives at the file's i-th
time, counted from its first row, rescaled to `rate` where one is given (the recorded mean rate is
(rows - 1) / span of the rows used).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mosaic.config.schema import ArrivalsConfig
from mosaic.core.errors import ConfigError

_STREAM = 0xA221   # apart from the workload's and the answer model's draws


def arrival_times(cfg: ArrivalsConfig, n_queries: int, seed: int) -> np.ndarray | None:
    """Arrival time of each query (seconds, non-decreasing, the first >= 0); None for batch."""
    if cfg.kind == "batch":
        return None
    if cfg.kind == "trace":
        return trace_times(Path(cfg.path).expanduser(), cfg.column, n_queries, cfg.rate)
    rng = np.random.default_rng([seed, _STREAM])
    mean = 1.0 / cfg.rate
    if cfg.kind == "poisson":
        gaps = rng.exponential(mean, n_queries)
    else:
        shape = 1.0 / cfg.cv ** 2
        gaps = rng.gamma(shape, mean / shape, n_queries)
    # The first query arrives at time 0: a run's clock starts with its first arrival.
    return np.concatenate([[0.0], np.cumsum(gaps[1:])]) if n_queries else np.zeros(0)


def trace_times(path: Path, column: str, n_queries: int, rate: float | None) -> np.ndarray:
    """The first n_queries arrival times of a CSV trace, from 0 (see the module)."""
    import pandas as pd

    where = f"arrivals.path={path}"
    if not path.is_file():
        raise ConfigError(f"{where}: no such file; give the CSV of arrival times (e.g. the Azure LLM inference "
                          "trace, ../shared/data/arrivals/azure_llm_2023_conv.csv)")
    try:
        frame = pd.read_csv(path, usecols=lambda c: c.strip() == column)
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ConfigError(f"{where}: not a readable CSV file ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
                          "give a CSV with a header row") from None
    if frame.shape[1] == 0:
        raise ConfigError(f"{where}: no column '{column}'; set arrivals.column to the column of arrival times")
    raw = frame.iloc[:, 0]
    if raw.empty:
        raise ConfigError(f"{where}: no rows; give a trace with one row per arrival")
    numeric = pd.to_numeric(raw, errors="coerce")
    if numeric.notna().all():
        times = numeric.to_numpy(dtype=float)
    else:
        stamps = pd.to_datetime(raw, errors="coerce", format="mixed")
        bad = raw[numeric.isna() & stamps.isna()]
        if len(bad):
            row = int(bad.index[0]) + 2   # the header is line 1
            raise ConfigError(f"{where}: line {row} has '{bad.iloc[0]}' in column '{column}', neither seconds nor "
                              "a date-time; fix or remove that row")
        times = ((stamps - stamps.iloc[0]).dt.total_seconds()).to_numpy(dtype=float)
    if not np.isfinite(times).all() or (times < 0).any():
        row = int(np.flatnonzero(~np.isfinite(times) | (times < 0))[0]) + 2
        raise ConfigError(f"{where}: line {row} has a negative or infinite time in column '{column}'; arrival "
                          "times are seconds >= 0")
    drops = np.flatnonzero(np.diff(times) < 0)
    if len(drops):
        row = int(drops[0]) + 3
        raise ConfigError(f"{where}: line {row} arrives before the line above it; sort the file by "
                          f"'{column}' (arrivals are read in file order)")
    if n_queries > len(times):
        raise ConfigError(f"{where}: {len(times)} arrivals for {n_queries} queries; set workload.n_queries <= "
                          f"{len(times)} or give a longer trace")
    times = times[:n_queries] - times[0]
    if rate is not None and n_queries > 1:
        span = times[-1]
        if span <= 0:
            raise ConfigError(f"{where}: its first {n_queries} arrivals all have the same time, so there is no "
                              "recorded rate to rescale; remove arrivals.rate or give a trace whose times differ")
        times = times * ((n_queries - 1) / span) / rate
    return times
