"""A run as a Chrome / Perfetto trace (https://ui.perfetto.dev, chrome://tracing): one process per
worker, its model loads and sessions as slices on one track ("engine"), its requests as async
slices beside them (requests of a session overlap: continuous batching), and two counter tracks per
worker: requests running (prefill begun, not finished) and requests queued (bound to the worker's
engine, or released to it, and not begun). KV blocks in use are not in a run's files, so not here. The aggregator stage is shifted by the
expert stage's makespan, so both stages lie on one time axis (trace.csv restarts at 0 per stage).

Built from a run folder's own files (trace.csv, sessions.csv, summary.json), so it works for any
backend's run:  python -m mosaic.run.perfetto RUN_DIR  (writes RUN_DIR/trace.perfetto.json).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping

from mosaic.core.arguments import ArgumentParser
from mosaic.graphs.trace import GRAPH_STAGE, SERVED
from mosaic.core.rundir import folders_done, read_run_dir, run_dirs_of, write_error, write_text_atomic
from mosaic.core.rundir import graph_run

PERFETTO_FILE = "trace.perfetto.json"
_US = 1e6


def events(requests: Iterable[Mapping[str, Any]], sessions: Iterable[Mapping[str, Any]],
           expert_stage_s: float) -> list[dict[str, Any]]:
    """Trace events of a run's requests and sessions (rows as in trace.csv and sessions.csv)."""
    def offset(stage: str) -> float:
        return expert_stage_s if stage == "aggregator" else 0.0

    out: list[dict[str, Any]] = []
    workers: set[int] = set()
    for s in sessions:
        w, t0 = int(s["worker"]), offset(s["stage"])
        workers.add(w)
        added = str(s.get("added", "")).lower() in ("true", "1")
        label = f"{s['model']} ({s['stage']}{', added mid-run' if added else ''})"
        if float(s["load_end_s"]) > float(s["load_start_s"]):
            out.append({"name": f"load {label}", "cat": "load", "ph": "X", "pid": w, "tid": 0,
                        "ts": (t0 + float(s["load_start_s"])) * _US,
                        "dur": (float(s["load_end_s"]) - float(s["load_start_s"])) * _US})
        args = {"requests": int(s["n_requests"])}
        if s.get("preemptions") not in (None, ""):
            args["preemptions"] = int(s["preemptions"])
        if s.get("error"):
            args["error"] = s["error"]
        out.append({"name": label, "cat": "session", "ph": "X", "pid": w, "tid": 0,
                    "ts": (t0 + float(s["run_start_s"])) * _US,
                    "dur": max(0.0, float(s["run_end_s"]) - float(s["run_start_s"])) * _US, "args": args})
    for r in requests:
        w, t0 = int(r["worker"]), offset(r["stage"])
        workers.add(w)
        common = {"name": r["request_id"], "cat": f"request,{r['stage']}", "pid": w, "tid": 0,
                  "id": r["request_id"]}
        args = {"model": r["model"], "prompt_tokens": int(r["prompt_tokens"]),
                "output_tokens": int(r["output_tokens"]),
                "ttft_s": float(r["first_token_s"]) - float(r["start_s"])}
        if r.get("bound_s") not in (None, ""):   # when the runtime bound it to this replica
            args["bound_s"] = float(r["bound_s"])
        if r.get("error"):
            args["error"] = r["error"]
        out.append({**common, "ph": "b", "ts": (t0 + float(r["start_s"])) * _US, "args": args})
        out.append({**common, "ph": "e", "ts": (t0 + max(float(r["finish_s"]), float(r["start_s"]))) * _US})
    out += counters(requests, offset)
    for w in sorted(workers):
        out.append({"name": "process_name", "ph": "M", "pid": w, "args": {"name": f"worker {w}"}})
        out.append({"name": "process_sort_index", "ph": "M", "pid": w, "args": {"sort_index": w}})
        out.append({"name": "thread_name", "ph": "M", "pid": w, "tid": 0, "args": {"name": "engine"}})
    return out


def counters(requests: Iterable[Mapping[str, Any]], offset) -> list[dict[str, Any]]:
    """Per worker, the requests running and queued over time, as counter events (one at each time
    the count changes, the value after every change at that time)."""
    changes: dict[tuple[int, str], dict[float, int]] = {}

    def add(w: int, track: str, t: float, d: int) -> None:
        at = changes.setdefault((w, track), {})
        at[t] = at.get(t, 0) + d

    for r in requests:
        if r.get("error"):
            continue
        w, t0 = int(r["worker"]), offset(r["stage"])
        start, finish = t0 + float(r["start_s"]), t0 + max(float(r["finish_s"]), float(r["start_s"]))
        add(w, "running", start, 1)
        add(w, "running", finish, -1)
        queued = r.get("bound_s") if r.get("bound_s") not in (None, "") else r.get("release_s")
        if queued not in (None, ""):
            add(w, "queued", t0 + min(float(queued), float(r["start_s"])), 1)
            add(w, "queued", start, -1)
    out = []
    for (w, track), at in sorted(changes.items()):
        n = 0
        for t in sorted(at):
            n += at[t]
            out.append({"name": f"requests {track}", "ph": "C", "pid": w, "ts": t * _US, "args": {track: n}})
    return out


def document(requests, sessions, expert_stage_s: float) -> dict[str, Any]:
    return {"traceEvents": events(requests, sessions, expert_stage_s), "displayTimeUnit": "ms"}


def from_run_dir(directory: Path) -> dict[str, Any]:
    """The trace of a finished run folder (either backend)."""
    summary, tables = read_run_dir(directory, ("trace.csv", "sessions.csv"))
    if graph_run(summary):
        # An agent-graph run: one stage in absolute times; its served requests are drawn, as the
        # run drew them (mosaic/run/graph_app.py output_files).
        served = [dict(x, stage=GRAPH_STAGE) for x in tables["trace.csv"] if x.get("status") == SERVED]
        return document(served, tables["sessions.csv"], 0.0)
    return document(tables["trace.csv"], tables["sessions.csv"], float(summary.get("expert_stage_s") or 0.0))


def main(argv: list[str] | None = None) -> int:
    ap = ArgumentParser(description="Write RUN_DIR/trace.perfetto.json from a run folder's files; a sweep's "
                                    "folder: each finished run's.")
    ap.add_argument("run_dirs", nargs="+", type=Path)
    args = ap.parse_args(argv)
    dirs, skipped = run_dirs_of(args.run_dirs)
    if skipped:
        print(f"left out {skipped} run(s) of the sweep that failed or did not finish", file=sys.stderr)
    failed = 0
    for d in dirs:   # a broken folder is said and skipped; the others are still written
        try:
            doc = from_run_dir(d)
            write_text_atomic(d / PERFETTO_FILE, json.dumps(doc))
        except (FileNotFoundError, KeyError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            failed += 1
            continue
        except OSError as e:
            print(f"error: {write_error(d / PERFETTO_FILE, e)}", file=sys.stderr)
            failed += 1
            continue
        print(f"wrote {d / PERFETTO_FILE} ({len(doc['traceEvents'])} events)")
    return folders_done(failed, len(dirs))


if __name__ == "__main__":
    sys.exit(main())
