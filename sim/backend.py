"""SimPy cluster: one process per worker running its sessions in order (load, then the engine)."""
from __future__ import annotations

from typing import Mapping

import simpy

from mosaic.cluster import Cluster
from mosaic.errors import ConfigError
from mosaic.plan import Plan
from mosaic.profiles import CostModel, ProfileSet, kv_capacity_tokens
from mosaic.trace import RequestRecord, SessionRecord, Trace, assemble_trace
from mosaic.workload.types import Outcome, Request
from sim.engine import BatchEngine


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

        def worker_loop(wp):
            memory = self.cluster.workers[wp.worker].memory_gib
            if wp.sessions:
                yield env.timeout(engine_cfg.worker_startup_s)
            for idx, session in enumerate(wp.sessions):
                model = self.profiles.model(session.model)
                load_start = env.now
                yield env.timeout(model.load_time_s)
                run_start = env.now
                batch = []
                for rid in session.request_ids:
                    if rid not in replay:
                        raise ConfigError(f"request {rid}: no output length to replay")
                    r = requests[rid]
                    room = engine_cfg.max_model_len - r.prompt_tokens
                    batch.append((rid, r.prompt_tokens, max(1, min(replay[rid].output_tokens, room))))
                engine = BatchEngine(CostModel(model, engine_cfg),
                                     kv_capacity_tokens(model, engine_cfg, memory),
                                     engine_cfg.max_num_seqs, engine_cfg.max_num_batched_tokens)
                for duration in engine.run(batch, lambda: env.now):
                    yield env.timeout(duration)
                result = engine.result
                for s in result.seqs:
                    r = requests[s.rid]
                    req_records.append(RequestRecord(
                        s.rid, r.query_id, r.model, r.stage, wp.worker, idx, s.start, s.first_token,
                        s.finish, r.prompt_tokens, s.target, replay[s.rid].answer))
                sess_records.append(SessionRecord(wp.worker, idx, session.model, load_start, run_start,
                                                  run_start, env.now, len(session.request_ids),
                                                  result.preemptions))
                if idx + 1 < len(wp.sessions):  # the engine must be gone before the next one loads
                    yield env.timeout(model.unload_time_s)

        for wp in plan.workers:
            env.process(worker_loop(wp))
        env.run()
        return assemble_trace(plan.stage, self.name, req_records, sess_records,
                              [w.id for w in self.cluster.workers])
