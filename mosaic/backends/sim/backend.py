"""SimPy cluster: one process per worker running its sessions in order (load, then the engine).

A tensor-parallel session is one engine over several workers: it starts once every rank has
reached it in its own list (a barrier), the lead rank's process runs the engine, and the other
ranks are held busy until it ends, so each worker's timeline shows the whole session.
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
from mosaic.trace import RequestRecord, SessionRecord, Trace, assemble_trace
from mosaic.workload.types import Outcome, Request


class SimBackend:
    name = "sim"

    def __init__(self, cluster: Cluster, profiles: ProfileSet, models=None):
        # `models` (the model registry) is for real engines; the simulator runs profiles instead.
        self.cluster = cluster
        self.profiles = profiles

    def run(self, plan: Plan, requests: Mapping[str, Request],
            replay: Mapping[str, Outcome] | None) -> Trace:
        if replay is None:
            raise ConfigError("backend=sim replays output lengths from the workload, which has none")
        env = simpy.Environment()
        req_records: list[RequestRecord] = []
        sess_records: list[SessionRecord] = []
        engine_cfg = self.profiles.engine
        memory = {w.id: w.memory_gib for w in self.cluster.workers}
        host = HostLoad(env, self.cluster, engine_cfg)
        arrived: dict[Session, dict[int, simpy.Event]] = {}
        done: dict[Session, simpy.Event] = {}
        for wp in plan.workers:
            for s in wp.sessions:
                if s.tp_size > 1 and s not in done:
                    arrived[s] = {w: env.event() for w in s.workers}
                    done[s] = env.event()

        def serve(session: Session, lead: int, idx: int):
            """Load and run one engine; returns (load start, run start, end, preemptions)."""
            tp = session.tp_size
            ranks = session.workers or (lead,)
            model = self.profiles.model(session.model)
            load_start = env.now
            host.start(ranks)
            yield from host.load(lead, load_time_s(model, engine_cfg, tp))
            run_start = env.now
            # A fresh engine's first steps pay one-off set-up (measured by the profiler; a TP engine's
            # ranks more, by profile_tp): in its serving, as the real worker's clock has it.
            warm = warmup_s(model, engine_cfg, tp)
            if warm:
                yield env.timeout(warm)
            batch = []
            for rid in session.request_ids:
                if rid not in replay:
                    raise ConfigError(f"request {rid}: no output length to replay")
                r = requests[rid]
                room = engine_cfg.output_room(r.prompt_tokens)
                batch.append((rid, r.prompt_tokens, max(1, min(replay[rid].output_tokens, room))))
            engine = session_engine(model, engine_cfg, min(memory[w] for w in ranks), tp)
            for duration in engine.run(batch, lambda: env.now):
                yield from host.elapse(lead, model.name, duration)
            host.stop(ranks)
            result = engine.result
            for s in result.seqs:
                r = requests[s.rid]
                req_records.append(RequestRecord(
                    s.rid, r.query_id, r.model, r.stage, lead, idx, s.start, s.first_token,
                    s.finish, r.prompt_tokens, s.target, replay[s.rid].answer))
            return load_start, run_start, env.now, result.preemptions

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
