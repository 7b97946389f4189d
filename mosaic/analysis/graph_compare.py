"""Two agent-graph run folders of one graph (e.g. backend=sim and backend=vllm), compared request by
request: where a per-query latency gap comes from, layer by layer.

Per layer of the graph, the medians over its served agent requests of each run, and the median of
the per-request ratio (second run / first) over the requests both served:
- hand-off: its release (its precursors done, as the coordinator saw it) to its start on the engine;
- TTFT: its start to its first token;
- decode ms/token: its first to its last token, per token after the first;
- duration: its release to its last token;
- cached prompt tokens (prefix cache, the overlap's prefill-ahead).
Then per-query latency p50 / p90 of each run, and the engines' speed in the second run against the
first: the median per-request ratio of decode ms/token over every layer (a host running its engines
slower than its profile shows here as > 1 on the real run against the simulated one). Used to split the fidelity suite's graph_dense miss
(results/agent_graphs.md); command: experiments/compare_graph_runs.py.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from mosaic.core.rundir import read_run_dir
from mosaic.core.rundir import graph_run

METRICS = {"handoff_s": "hand-off (s)", "ttft_s": "TTFT (s)", "decode_ms_per_token": "decode ms/token",
           "duration_s": "duration (s)", "cached_tokens": "cached prompt tokens"}


def _requests(directory: Path) -> tuple[pd.DataFrame, pd.DataFrame, frozenset[str]]:
    summary, tables = read_run_dir(directory, ("trace.csv", "queries.csv"))
    if not graph_run(summary):
        raise ValueError(f"{directory} is a flat MoA run; compare agent-graph runs (topology=dense or tree), "
                         "or use `mosaic runs --requests` for flat ones")
    t = pd.DataFrame(tables["trace.csv"])
    graph = frozenset(t["request_id"])   # every agent request, served or cancelled
    t = t[t["status"] == "served"].copy()
    for c in ("layer", "output_tokens", "cached_tokens"):
        t[c] = t[c].astype(int)
    for c in ("release_s", "start_s", "first_token_s", "finish_s"):
        t[c] = t[c].astype(float)
    t["handoff_s"] = t.start_s - t.release_s
    t["ttft_s"] = t.first_token_s - t.start_s
    t["decode_ms_per_token"] = (t.finish_s - t.first_token_s) / (t.output_tokens - 1).clip(lower=1) * 1e3
    t["duration_s"] = t.finish_s - t.release_s
    q = pd.DataFrame(tables["queries.csv"])
    q["latency_s"] = q["latency_s"].astype(float)
    return t.set_index("request_id"), q, graph


def compare_graph_runs(first: Path, second: Path) -> tuple[pd.DataFrame, dict[str, float]]:
    """(per layer x metric: first's median, second's median, median per-request ratio second/first;
    per-query latency p50/p90 of each). ValueError naming the folder when either is not a finished
    agent-graph run, or the two ran different graphs (no agent request in common)."""
    (a, qa, graph_a), (b, qb, graph_b) = _requests(Path(first)), _requests(Path(second))
    # early exit may cancel other requests in each run, but one graph has one set of agent requests
    if graph_a != graph_b:
        only = sorted(graph_a ^ graph_b)
        raise ValueError(f"{first} and {second} ran different graphs ({len(only)} agent requests in one only, e.g. "
                         f"{only[0]}): compare two runs of one graph (same topology, workload, seed and n_queries)")
    both = a.index.intersection(b.index)
    if not len(both):
        raise ValueError(f"{first} and {second} have no served agent request in common (early exit cancelled "
                         "them in one run or the other): nothing to compare request by request")
    rows = []
    for layer in sorted(set(a.layer) | set(b.layer)):
        la, lb = a[a.layer == layer], b[b.layer == layer]
        common = la.index.intersection(lb.index)
        for key, label in METRICS.items():
            ratio = (lb.loc[common, key] / la.loc[common, key]).replace([float("inf"), -float("inf")], float("nan"))
            rows.append({"layer": layer, "metric": label, "first": la[key].median(), "second": lb[key].median(),
                         "ratio": ratio.median() if len(common) else float("nan"), "requests": len(common)})
    latency = {f"{name}_{p}": float(q.latency_s.quantile(x)) for name, q in (("first", qa), ("second", qb))
               for p, x in (("p50", 0.5), ("p90", 0.9))}
    decoding = [r for r in both if a.at[r, "output_tokens"] > 1 and b.at[r, "output_tokens"] > 1]
    ratio = b.loc[decoding, "decode_ms_per_token"] / a.loc[decoding, "decode_ms_per_token"]
    latency["decode_ratio"] = float(ratio.median()) if len(decoding) else float("nan")
    return pd.DataFrame(rows), latency


def _change(latency: dict[str, float], p: str) -> str:
    a, b = latency[f"first_{p}"], latency[f"second_{p}"]
    return f"{b / a - 1:+.1%}" if a else "n/a"   # a zero first latency: no ratio


def render(first: Path, second: Path, table: pd.DataFrame, latency: dict[str, float]) -> str:
    lines = [f"first: {first}", f"second: {second}", "",
             f"query latency p50 {latency['first_p50']:.3f} / {latency['second_p50']:.3f} s "
             f"({_change(latency, 'p50')}), p90 {latency['first_p90']:.3f} / "
             f"{latency['second_p90']:.3f} s ({_change(latency, 'p90')}); decode ms/token second / first "
             f"{latency['decode_ratio']:.2f} (median per request, every layer)", "",
             "| layer | metric | first (median) | second (median) | second / first (median per request) | requests |",
             "|---|---|---|---|---|---|"]
    for r in table.itertuples():
        ratio = "n/a" if pd.isna(r.ratio) else f"{r.ratio:.2f}"   # a first run's zero: no ratio
        lines.append(f"| {r.layer} | {r.metric} | {r.first:.4g} | {r.second:.4g} | {ratio} | {r.requests} |")
    return "\n".join(lines) + "\n"
