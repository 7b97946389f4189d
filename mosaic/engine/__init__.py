"""The engine model: what a vLLM-style engine does with a batch, step by step, and what that costs.

One layer that the planner (session curves), the simulator backend, the fitting code and the
scheduler benchmark all call, so a session is priced one way everywhere:

- step_cost: per-step latency of a (model, engine) pair from its profile (CostModel), TP applied;
- v0, v1: the engines' step loops (vLLM V0: prefill steps first; V1: one token budget per step,
  chunked prefill, block-granular KV, preemption with prefix-cache reuse);
- host: how busy neighbours on one host slow a worker's steps and loads (host contention);
- session: a session on a fresh engine (session_engine, run_session, session_runner);
- floor: prices for requests of known lengths (StepFloor lower bound, GroupCosts).
"""
from mosaic.engine.floor import GroupCosts, StepFloor
from mosaic.engine.host import HostLoad
from mosaic.engine.session import (Batch, RunSession, cost_model, run_session, session_engine, session_runner,
                                   usable_kv_tokens, warmup_s)
from mosaic.engine.step_cost import CostModel
from mosaic.engine.v0 import BatchEngine, EngineResult, Jump, SeqState, Source, Step, Wait
from mosaic.engine.v1 import Inbox, StepRecord, V1Engine, V1Seq

__all__ = ["Batch", "BatchEngine", "CostModel", "EngineResult", "GroupCosts", "HostLoad", "Inbox", "Jump", "RunSession",
           "SeqState", "Source", "Step", "StepFloor", "StepRecord", "V1Engine", "V1Seq", "Wait", "cost_model", "run_session",
           "session_engine", "session_runner", "usable_kv_tokens", "warmup_s"]
