"""SimPy cluster: one process per worker running its sessions in order (load, then the engine).

A tensor-parallel session is one engine over several workers: it starts once every rank has
reached it in its own list (a barrier), the lead rank's process runs the engine, and the other
ranks are held busy until it ends, so each worker's timeline shows the whole session.

The runtime (mosaic/runtime) decides what the plan leaves open. Under `static` each session runs
the requests the plan gave it, submitted at its start. Under a late-binding runtime a session's
engine takes requests from the runtime whenever it has room, a planned session the runtime has
nothing for is skipped (no load), and a worker done with its plan asks the runtime for a model to
load; a worker's engine and its sessions' unloads are paid before the load that needs them.
"""
from __future__ import annotations

from typing import Mapping

import simpy

from mosaic.cluster import Cluster
from mosaic.core.errors import ConfigError
from mosaic.core.progress import bar
from mosaic.plan import Plan, PlanError, Session
from mosaic.engine import HostLoad, session_engine, warmup_s
from mosaic.profiles import ProfileSet, load_time_s
from mosaic.runtime import Replica, Runtime, StageInputs
from mosaic.trace import RequestRecord, SessionRecord, Trace, assemble_trace
from mosaic.workload.types import Outcome, Request


def replayed(rid: str, requests: Mapping[str, Request], replay: Mapping[str, Outcome],
             output_room) -> tuple[str, int, int]:
    """(id, prompt, output tokens) as the engine runs the request: the replayed length, capped by
    the room its prompt leaves in the context, at least 1."""
    if rid not in replay:
        raise ConfigError(f"request {rid}: no output length to replay")
    r = requests[rid]
    return rid, r.prompt_tokens, max(1, min(replay[rid].output_tokens, output_room(r.prompt_tokens)))


def tp_barriers(env: simpy.Environment, plan: Plan) -> tuple[dict, dict]:
    """Per tensor-parallel session: an event per rank that reached it in its own list, and one for
    its end (the lead rank runs the engine, the others wait on it)."""
    arrived: dict[Session, dict[int, simpy.Event]] = {}
    done: dict[Session, simpy.Event] = {}
    for wp in plan.workers:
        for s in wp.sessions:
            if s.tp_size > 1 and s not in done:
                arrived[s] = {w: env.event() for w in s.workers}
                done[s] = env.event()
    return arrived, done


class _Take:
    """The engine's Source (mosaic/engine/v0.py): the runtime's next request for a replica, with
    the output length the simulator replays."""

    def __init__(self, runtime: Runtime, replica: Replica, requests, replay, room, env):
        self.runtime, self.replica, self.requests, self.replay, self.room, self.env = \
            runtime, replica, requests, replay, room, env

    def take(self, fits):
        rid = self.runtime.take(self.replica, fits, self.env.now)
        return None if rid is None else replayed(rid, self.requests, self.replay, self.room)

    def done(self, rid, t):
        self.runtime.finished(rid, t)


class SimBackend:
    name = "sim"
    runtimes = None   # every runtime: static and late binding

    def __init__(self, cluster: Cluster, profiles: ProfileSet, models=None):
        # `models` (the model registry) is for real engines; the simulator runs profiles instead.
        self.cluster = cluster
        self.profiles = profiles
        self.memory = {w.id: w.memory_gib for w in cluster.workers}

    def _serve(self, env: simpy.Environment, host: HostLoad, model_name: str, ranks: tuple[int, ...], batch,
               source=None):
        """Load one engine of `model_name` over `ranks` (lead first) and run it on `batch`, or on what
        `source` binds to it; returns (load start, run start, end, the engine's result)."""
        engine_cfg = self.profiles.engine
        tp, lead = len(ranks), ranks[0]
        model = self.profiles.model(model_name)
        load_start = env.now
        host.start(ranks)
        yield from host.load(lead, load_time_s(model, engine_cfg, tp))
        run_start = env.now
        # A fresh engine's first steps pay one-off set-up (measured by the profiler; a TP engine's
        # ranks more, by profile_tp): in its serving, as the real worker's clock has it.
        warm = warmup_s(model, engine_cfg, tp)
        if warm:
            yield env.timeout(warm)
        # vLLM gives every rank the same share: the smallest GPU's
        engine = session_engine(model, engine_cfg, min(self.memory[w] for w in ranks), tp)
        for duration in engine.run(batch, lambda: env.now, source=source):
            yield from host.elapse(lead, model.name, duration)
        host.stop(ranks)
        return load_start, run_start, env.now, engine.result

    @staticmethod
    def _records(result, requests: Mapping[str, Request], replay: Mapping[str, Outcome], lead: int, idx: int,
                 bound_of) -> list[RequestRecord]:
        out = []
        for s in result.seqs:
            r = requests[s.rid]
            out.append(RequestRecord(s.rid, r.query_id, r.model, r.stage, lead, idx, s.start, s.first_token,
                                     s.finish, r.prompt_tokens, s.target, replay[s.rid].answer, bound_s=bound_of(s.rid)))
        return out

    def run(self, plan: Plan, requests: Mapping[str, Request],
            replay: Mapping[str, Outcome] | None, runtime: Runtime | None = None) -> Trace:
        if replay is None:
            raise ConfigError("backend=sim replays output lengths from the workload, which has none")
        if runtime is not None and runtime.late_binding:
            return self._run_late(plan, requests, replay, runtime)
        env = simpy.Environment()
        req_records: list[RequestRecord] = []
        sess_records: list[SessionRecord] = []
        engine_cfg = self.profiles.engine
        host = HostLoad(env, self.cluster, engine_cfg)
        arrived, done = tp_barriers(env, plan)

        def serve(session: Session, lead: int, idx: int):
            """Load and run one engine; returns (load start, run start, end, preemptions)."""
            batch = [replayed(rid, requests, replay, engine_cfg.output_room) for rid in session.request_ids]
            load_start, run_start, end, result = yield from self._serve(
                env, host, session.model, session.workers or (lead,), batch)
            req_records.extend(self._records(result, requests, replay, lead, idx, lambda rid: run_start))
            return load_start, run_start, end, result.preemptions

        def worker_loop(wp):
            if wp.sessions:
                yield env.timeout(engine_cfg.worker_startup_s)
            for idx, session in enumerate(wp.sessions):
                if session.tp_size > 1:
                    arrived[session][wp.worker].succeed()
                    if wp.worker == session.workers[0]:
                        yield env.all_of(list(arrived[session].values()))
                        times = yield env.process(serve(session, wp.worker, idx))
                        done[session].succeed(times)
                    else:
                        times = yield done[session]
                else:
                    times = yield env.process(serve(session, wp.worker, idx))
                load_start, run_start, end, preemptions = times
                if session.tp_size == 1 or wp.worker == session.workers[0]:
                    progress.update(len(session.request_ids))
                sess_records.append(SessionRecord(
                    wp.worker, idx, session.model, load_start, run_start, run_start, end,
                    len(session.request_ids), preemptions, tp_size=session.tp_size,
                    tp_mode="simulated" if session.tp_size > 1 else ""))
                if idx + 1 < len(wp.sessions):  # the engine must be gone before the next one loads
                    yield env.timeout(self.profiles.model(session.model).unload_time_s)

        for wp in plan.workers:
            env.process(worker_loop(wp))
        planned = {rid for wp in plan.workers for s in wp.sessions for rid in s.request_ids}
        with bar(len(planned), f"{plan.stage} stage (simulated)") as progress:
            env.run()
        stuck = [s for s, ev in done.items() if not ev.triggered]
        if stuck:
            raise PlanError(f"plan '{plan.policy}': {len(stuck)} tensor-parallel sessions never started "
                            f"(e.g. {stuck[0].model} over workers {list(stuck[0].workers)}): their "
                            "workers list shared sessions in different orders, or a rank does not list it")
        return assemble_trace(plan.stage, self.name, req_records, sess_records,
                              [w.id for w in self.cluster.workers])

    def _run_late(self, plan: Plan, requests: Mapping[str, Request], replay: Mapping[str, Outcome],
                  runtime: Runtime) -> Trace:
        env = simpy.Environment()
        req_records: list[RequestRecord] = []
        sess_records: list[SessionRecord] = []
        engine_cfg = self.profiles.engine
        host = HostLoad(env, self.cluster, engine_cfg)
        arrived, done = tp_barriers(env, plan)
        lead_slot = {s: slot for wp in plan.workers for slot, s in enumerate(wp.sessions)
                     if s.tp_size > 1 and s.workers[0] == wp.worker}
        runtime.released(list(requests), env.now)

        def serve(model_name: str, ranks: tuple[int, ...], replica: Replica, idx: int):
            """Load one engine and run it on what the runtime binds to it; returns (load start,
            run start, end, preemptions, requests served)."""
            source = _Take(runtime, replica, requests, replay, engine_cfg.output_room, env)
            load_start, run_start, end, result = yield from self._serve(env, host, model_name, ranks, [], source)
            req_records.extend(self._records(result, requests, replay, ranks[0], idx,
                                             lambda rid: runtime.bound[rid][1]))
            runtime.ended(replica, env.now)
            progress.update(len(result.seqs))
            return load_start, run_start, end, result.preemptions, len(result.seqs)

        def worker_loop(wp):
            started = False
            last: str | None = None     # the model this worker's last engine ran (unloaded before the next)
            ran = 0                     # sessions run here: their index in the trace
            loaded: set[str] = set()

            def before_load():
                nonlocal started
                if not started:
                    started = True
                    yield env.timeout(engine_cfg.worker_startup_s)
                elif last is not None:
                    yield env.timeout(self.profiles.model(last).unload_time_s)

            slot = 0
            while True:
                is_added = False
                if slot < len(wp.sessions):
                    session = wp.sessions[slot]
                    slot += 1
                    if session.tp_size > 1:
                        lead = session.workers[0]
                        yield from before_load()
                        last = None   # paid: whatever comes next loads without a further unload
                        arrived[session][wp.worker].succeed()
                        if wp.worker == lead:
                            yield env.all_of(list(arrived[session].values()))
                            replica = Replica(lead, lead_slot[session], session.model)
                            times = None
                            if runtime.should_start(replica, env.now):
                                times = yield env.process(serve(session.model, session.workers, replica, ran))
                            done[session].succeed(times)
                        else:
                            times = yield done[session]
                        if times is None:
                            continue
                    else:
                        replica = Replica(wp.worker, slot - 1, session.model)
                        if not runtime.should_start(replica, env.now):
                            continue
                        yield from before_load()
                        times = yield env.process(serve(session.model, (wp.worker,), replica, ran))
                    model, tp = session.model, session.tp_size
                else:
                    replica = runtime.add_replica(wp.worker, loaded | {s.model for s in wp.sessions}, env.now)
                    if replica is None:
                        return
                    model = replica.model
                    yield from before_load()
                    times = yield env.process(serve(model, (wp.worker,), replica, ran))
                    tp, is_added = 1, True
                load_start, run_start, end, preemptions, n = times
                sess_records.append(SessionRecord(
                    wp.worker, ran, model, load_start, run_start, run_start, end, n, preemptions,
                    tp_size=tp, tp_mode="simulated" if tp > 1 else "", added=is_added))
                loaded.add(model)
                last = model
                ran += 1

        for wp in plan.workers:
            env.process(worker_loop(wp))
        with bar(len(requests), f"{plan.stage} stage (simulated, runtime={runtime.name})") as progress:
            env.run()
        left = runtime.unbound()
        if left:
            raise PlanError(f"runtime '{runtime.name}': {len(left)} requests were never served (e.g. {left[0]}): "
                            "no replica of their model started after they were released")
        return assemble_trace(plan.stage, self.name, req_records, sess_records,
                              [w.id for w in self.cluster.workers])
