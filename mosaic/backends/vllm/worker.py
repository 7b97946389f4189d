"""What runs inside one worker process: its sessions in order, one vLLM engine per session.

Imports vLLM only here, inside the child, after the launcher has set the device environment
(CUDA_VISIBLE_DEVICES or the CPU cores), which vLLM reads at import time.
"""
from __future__ import annotations

import gc
import os
import sys
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Mapping

from mosaic.core.errors import ConfigError

# Scripts that start engines need a __main__ guard (vLLM spawns processes); this module is only ever
# the target of a spawned process, never run as a script.


def isolate_from_script_dir() -> None:
    """A spawned process inherits sys.path[0] = the launching script's folder (experiments/), whose
    profile.py would shadow the standard library's `profile`, which vLLM imports through cProfile.
    Workers import only installed packages, so that folder is dropped before vLLM loads."""
    main = sys.modules.get("__mp_main__") or sys.modules.get("__main__")
    script_dir = Path(getattr(main, "__file__", None) or ".").resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != script_dir]


def env_cores(env: Mapping[str, str]) -> set[int]:
    """The CPU cores a worker's environment gives its engine (VLLM_CPU_OMP_THREADS_BIND: "0,2-3",
    or "a|b" for the ranks of one tensor-parallel engine); empty where it names none (GPUs)."""
    spec = env.get("VLLM_CPU_OMP_THREADS_BIND", "")
    if spec in ("", "auto", "nobind"):
        return set()
    cores: set[int] = set()
    for part in spec.replace("|", ",").split(","):
        lo, _, hi = part.strip().partition("-")
        if lo:
            cores.update(range(int(lo), int(hi or lo) + 1))
    return cores


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(f"/proc/{entry.name}/stat").read_text()
            except OSError:   # exited meanwhile
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


CONFINE_ENV = "MOSAIC_CPU_CONFINE"


@contextmanager
def own_cores_at_start(env: Mapping[str, str]):
    """Start an engine on the worker's own cores, then give its engine-core process back the mask it
    would have had. Every process that imports torch pins itself to each core of its mask in turn
    to probe it (seen with strace: [0 1] -> [0] -> [1] -> [0 1]); where a neighbour's engine keeps a
    core busy, that probe waited up to 70 s (the fidelity suite's skewed_plan: worker 1's second
    engine loaded in 56-141 s instead of 22-30 s, while worker 0 served on core 0). By default
    (backend.options.cpu_confine=start) only start-up is confined: vLLM pins its compute threads and
    lets its engine-core process float. With cpu_confine=always (MOSAIC_CPU_CONFINE in the
    environment) the engine's host-side processes stay on the worker's cores too, so a worker does
    not run faster when its neighbour idles: floating, the host-side work (scheduling and output
    processing in Python) moves to an idle core, 640 requests of Exaone alone took 0.78x the profiled
    all-busy time; confined, 0.94x alone against 0.94x beside a busy neighbour (results/fidelity_notes.md)."""
    cores = env_cores(env)
    mask = set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else set()
    if not cores or not (cores & mask) or cores >= mask:
        yield
        return
    os.sched_setaffinity(0, cores & mask)
    if env.get(CONFINE_ENV, "start") == "always":
        yield   # this process and every one it starts stay on the worker's cores
        return
    before = set(_children(os.getpid()))
    try:
        yield
    finally:
        # This process's threads (those started meanwhile inherited the confined mask) and the
        # engine-core process(es) it started, every thread of them.
        for pid in [os.getpid(), *(set(_children(os.getpid())) - before)]:
            try:
                tids = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue
            for tid in tids:
                try:
                    os.sched_setaffinity(int(tid), mask)
                except OSError:   # a thread that ended meanwhile
                    pass


def start_engine(model: str, engine_args: dict[str, Any]):
    import inspect

    from vllm import EngineArgs, LLMEngine

    # Checked here, where vLLM is imported anyway (importing it in the parent costs ~10 s), so a
    # misspelt engine setting names itself rather than ending in EngineArgs' TypeError.
    params = inspect.signature(EngineArgs).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = [] if takes_any else sorted(k for k in engine_args if k not in params)
    if unknown:
        raise ConfigError(f"models.engine (or the model's own engine): vLLM's EngineArgs has no setting "
                          f"{', '.join(unknown)}; remove it or use one of vllm.EngineArgs' fields")
    with own_cores_at_start(os.environ):
        return LLMEngine.from_engine_args(EngineArgs(model=model, **engine_args))


def shutdown_engine(engine, grace_s: float | None = None) -> None:
    """End the engine. Its core process is asked to stop and killed after `grace_s` seconds (None:
    vLLM's default, 5 s; on CPU the core outlives it every time, so each end costs the full grace).
    Between two sessions of a worker the grace is kept, as the profiles' unload time measures it;
    after a worker's last session nothing waits for it, and 0 ends the engine at once. A vLLM whose
    client takes no timeout (older releases) ends it as it always did."""
    import inspect

    core = getattr(engine, "engine_core", None)
    if core is not None and hasattr(core, "shutdown"):
        if grace_s is not None and "timeout" in inspect.signature(core.shutdown).parameters:
            core.shutdown(timeout=grace_s)
        else:
            core.shutdown()
    del engine
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass


def count_preemptions(engine) -> list[int] | None:
    """A counter of the engine's preemptions, fed by its per-step statistics; None when the engine
    keeps none (disable_log_stats: true), as the engine core runs in its own process and reports
    preemptions only through them."""
    manager = getattr(engine, "logger_manager", None)
    if manager is None:
        return None
    count, record = [0], manager.record

    def counting(*args, iteration_stats=None, **kwargs):
        if iteration_stats is not None:
            count[0] += iteration_stats.num_preempted_reqs
        return record(*args, iteration_stats=iteration_stats, **kwargs)

    manager.record = counting
    return count


class Progress:
    """Finished requests, sent to the parent as {"worker", "progress": n} messages on the result
    queue, at most every `every_s` seconds (flush() at a session's end): its progress bar."""

    def __init__(self, queue, worker: int, every_s: float = 0.5):
        self.queue, self.worker, self.every_s = queue, worker, every_s
        self.pending, self.last = 0, time.monotonic()

    def done(self, n: int = 1) -> None:
        self.pending += n
        if time.monotonic() - self.last >= self.every_s:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.queue.put({"worker": self.worker, "progress": self.pending})
        self.pending, self.last = 0, time.monotonic()


def run_session(session: dict[str, Any], t0: float, progress: Progress | None = None,
                last: bool = False) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from vllm import SamplingParams

    done = progress.done if progress is not None else (lambda n=1: None)

    now = lambda: time.time() - t0  # noqa: E731
    load_start = now()
    try:
        engine = start_engine(session["path"], session["engine_args"])
    except Exception as e:  # an engine that fails to start must not take the other sessions down
        detail = " ".join(str(e).split())[:400]
        err = (f"worker {session['worker']} session {session['index']}: engine for model {session['model']} "
               f"({session['path']}) failed to start: {type(e).__name__}: {detail}")
        t = now()
        info = {"load_start_s": load_start, "load_end_s": t, "run_start_s": t, "run_end_s": t, "error": err}
        done(len(session["requests"]))
        return info, [{"request_id": r["id"], "error": err} for r in session["requests"]]
    load_end = now()
    preempted = count_preemptions(engine)
    records: dict[str, dict[str, Any]] = {}
    failed: list[dict[str, Any]] = []
    for r in session["requests"]:
        params = SamplingParams(max_tokens=r["max_tokens"], ignore_eos=session["replay"], temperature=0.0)
        prompt = r["prompt"] if r.get("prompt") else {"prompt_token_ids": r["prompt_token_ids"]}
        try:
            engine.add_request(r["id"], prompt, params)
        except Exception as e:  # e.g. a text prompt longer than the context: this request only
            failed.append({"request_id": r["id"], "error": f"request {r['id']} rejected by the engine for "
                           f"{session['model']}: {type(e).__name__}: {' '.join(str(e).split())[:300]}"})
            done()
            continue
        records[r["id"]] = {"request_id": r["id"], "start_s": now()}
    while engine.has_unfinished_requests():
        for out in engine.step():
            rec = records[out.request_id]
            t = now()
            if out.outputs and out.outputs[0].token_ids and "first_token_s" not in rec:
                rec["first_token_s"] = t
            if out.finished:
                rec["finish_s"] = t
                rec["output_tokens"] = len(out.outputs[0].token_ids) if out.outputs else 0
                rec["text"] = out.outputs[0].text if out.outputs else ""
                done()
    run_end = now()
    shutdown_engine(engine, 0.0 if last else None)
    for rec in records.values():
        rec.setdefault("first_token_s", rec.get("finish_s", run_end))
        rec.setdefault("finish_s", run_end)
    info = {"load_start_s": load_start, "load_end_s": load_end, "run_start_s": load_end, "run_end_s": run_end,
            "error": None, "preemptions": preempted[0] if preempted else None}
    return info, list(records.values()) + failed


def worker_main(spec: dict[str, Any], queue) -> None:
    """Entry point of a worker process: run every session, send one message back."""
    os.environ.update(spec["env"])
    isolate_from_script_dir()
    sessions, records = [], []
    progress = Progress(queue, spec["worker"])
    try:
        for i, session in enumerate(spec["sessions"]):
            info, recs = run_session(session, spec["t0"], progress, last=i + 1 == len(spec["sessions"]))
            progress.flush()
            sessions.append({"index": session["index"], "model": session["model"],
                             "n_requests": len(session["requests"]), **info})
            records += [{**r, "session": session["index"]} for r in recs]
    except Exception:  # report, never hang the parent
        queue.put({"worker": spec["worker"], "sessions": sessions, "records": records,
                   "fatal": traceback.format_exc(limit=5)})
        return
    queue.put({"worker": spec["worker"], "sessions": sessions, "records": records, "fatal": None})
