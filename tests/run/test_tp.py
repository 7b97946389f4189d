"""The tensor-parallel aggregator: profile scaling, TP plans, the simulated TP session, the pipeline's
aggregation.placement, and how the vLLM backend launches a TP engine (no vLLM needed here)."""

import re
from dataclasses import replace

import pytest

from mosaic.config.schema import AggregationConfig
from mosaic.cluster import Cluster
from mosaic.core.errors import ConfigError
from mosaic.run.pipeline import run_pipeline
from mosaic.plan import Plan, PlanError, Session, WorkerPlan, validate_plan
from mosaic.engine import CostModel
from mosaic.profiles import GIB, kv_capacity_tokens, load_time_s, parse_profiles
from mosaic.config.schema import SchedulerConfig
from mosaic.schedulers import schedule
from mosaic.costs.tensor_parallel import build_tp_problem
from mosaic.workload.answer_model import SyntheticSpec
from mosaic.workload.sources.synthetic import generate
from mosaic.workload.types import Outcome, Request
from mosaic.backends.sim.backend import SimBackend

# Round numbers so the expected times can be worked out by hand.
STEP_MS, TOKEN_MS, CTX_MS, LEN2_MS = 2.0, 0.5, 0.01, 0.001
SPEEDUP, TP_LOAD_S, LOAD_S, STARTUP_S = 1.6, 3.0, 10.0, 1.0


def hand_raw(kv_capacity=50, weight_gib=0.0, speedup=None):
    engine = {"device": "test", "memory_gib": 1.0, "max_num_seqs": 8, "max_num_batched_tokens": 512,
              "max_model_len": 64, "gpu_memory_utilization": 0.5, "step_overhead_ms": 0.0,
              "per_seq_overhead_ms": 0.0, "linear_ms_by_tokens": [[1, 1.0], [2, 2.0]],
              "linear_reference_params_b": 1.0, "hbm_bandwidth_gbs": 1.0, "bandwidth_efficiency": 1.0,
              "peak_tflops": 1.0, "flops_efficiency": 1.0, "worker_startup_s": STARTUP_S,
              "tensor_parallel": {"step_speedup": speedup or {2: SPEEDUP}, "load_overhead_s": TP_LOAD_S,
                                  "source": "hand-made for the test"}}
    model = {"kind": "instruct", "hf_id": "x", "params_b": 1.0, "weight_gib": weight_gib,
             "kv_bytes_per_token": 1024, "n_layers": 2, "hidden_size": 64, "load_time_s": LOAD_S,
             "output": {"shape": "one", "mean_tokens": 20, "cap": 64},
             "cost": {"step_ms": STEP_MS, "token_ms": TOKEN_MS, "ctx_ms": CTX_MS, "len2_ms": LEN2_MS},
             "kv_capacity": kv_capacity}
    return {"engine": engine, "length_shapes": {"one": [{"weight": 1, "median": 1, "sigma": 0.5}]},
            "models": {"Agg": model}}


def hand_profiles(**kw):
    return parse_profiles(hand_raw(**kw))


def two_requests(prompt=10, out=30):
    reqs = {f"q{i}/agg": Request(f"q{i}/agg", f"q{i}", "Agg", prompt, "aggregator") for i in range(2)}
    return reqs, {rid: Outcome(out, "A") for rid in reqs}


def tp_plan(reqs, n=2):
    s = Session("Agg", tuple(sorted(reqs)), tuple(range(n)))
    return Plan("aggregator", "tensor_parallel", tuple(WorkerPlan(w, (s,)) for w in range(n)))


def test_tp_session_time_matches_hand_computation():
    profiles = hand_profiles()
    reqs, replay = two_requests(prompt=10, out=30)
    trace = SimBackend(Cluster.uniform(2, 1.0), profiles).run(tp_plan(reqs), reqs, replay)
    # One prefill step for both prompts (20 tokens, 2 * 10^2 squared length), then 29 decode steps
    # of 2 sequences whose contexts are 11..39 tokens each; every step 1.6x faster than at TP=1.
    prefill_ms = STEP_MS + TOKEN_MS * 20 + LEN2_MS * 2 * 10**2
    decode_ms = sum(STEP_MS + TOKEN_MS * 2 + CTX_MS * 2 * (10 + j) for j in range(1, 30))
    serve_s = (prefill_ms + decode_ms) / SPEEDUP / 1e3
    load_s = LOAD_S + TP_LOAD_S
    assert trace.makespan_s == pytest.approx(STARTUP_S + load_s + serve_s, rel=1e-9)
    for r in trace.requests:
        assert r.worker == 0 and r.output_tokens == 30   # requests sit with the lead rank
        assert r.first_token_s == pytest.approx(STARTUP_S + load_s + prefill_ms / SPEEDUP / 1e3)


def test_a_tp_engines_warm_up_is_served_not_loaded():
    """engine.tensor_parallel.warmup_s (profile_tp: the first request's extra on a TP engine): the
    session's load ends without it and its first tokens come that much later, as on the real engine's
    clock; before, it was part of load_overhead_s and the served time ran 2.4 s short on the smoke
    run's TP=2 aggregator (results/fidelity.resim.md)."""
    raw = hand_raw()
    raw["engine"]["tensor_parallel"]["warmup_s"] = {2: 2.0}
    reqs, replay = two_requests()
    base = SimBackend(Cluster.uniform(2, 1.0), hand_profiles()).run(tp_plan(reqs), reqs, replay)
    warm = SimBackend(Cluster.uniform(2, 1.0), parse_profiles(raw)).run(tp_plan(reqs), reqs, replay)
    assert warm.sessions[0].run_start_s == pytest.approx(base.sessions[0].run_start_s)
    assert warm.makespan_s == pytest.approx(base.makespan_s + 2.0)
    assert [r.first_token_s for r in warm.requests] == pytest.approx([r.first_token_s + 2.0 for r in base.requests])
    # ...and the plan's prediction counts it as the load's overhead did.
    profiles = parse_profiles(raw)
    problem = build_tp_problem("aggregator", list(reqs.values()), Cluster.uniform(2, 1.0), profiles)
    before = build_tp_problem("aggregator", list(reqs.values()), Cluster.uniform(2, 1.0), hand_profiles())
    assert problem.models[0].load_s == pytest.approx(before.models[0].load_s + 2.0)


def test_tp_session_keeps_every_rank_busy_for_its_whole_span():
    reqs, replay = two_requests()
    trace = SimBackend(Cluster.uniform(2, 1.0), hand_profiles()).run(tp_plan(reqs), reqs, replay)
    assert sorted(s.worker for s in trace.sessions) == [0, 1]
    a, b = trace.sessions
    assert (a.load_start_s, a.run_start_s, a.run_end_s) == (b.load_start_s, b.run_start_s, b.run_end_s)
    assert a.tp_size == b.tp_size == 2
    assert [w.busy_s for w in trace.workers] == pytest.approx([trace.makespan_s - STARTUP_S] * 2)


def test_tp_session_waits_for_every_rank():
    """A rank still busy with its own session holds the TP engine back until it is free."""
    profiles = hand_profiles()
    reqs, replay = two_requests()
    solo = {"q9/agg": Request("q9/agg", "q9", "Agg", 10, "aggregator")}
    tp = Session("Agg", tuple(sorted(reqs)), (0, 1))
    plan = Plan("aggregator", "x", (WorkerPlan(0, (tp,)), WorkerPlan(1, (Session("Agg", ("q9/agg",)), tp))))
    trace = SimBackend(Cluster.uniform(2, 1.0), profiles).run(
        plan, {**reqs, **solo}, {**replay, "q9/agg": Outcome(30, "B")})
    solo_end = next(s.run_end_s for s in trace.sessions if s.worker == 1 and s.index == 0)
    tp_rec = [s for s in trace.sessions if s.tp_size == 2]
    assert len(tp_rec) == 2 and all(s.load_start_s == pytest.approx(solo_end) for s in tp_rec)


def test_kv_capacity_of_combined_memory():
    # Derived: N x memory x utilisation minus ONE copy of the weights.
    p = hand_profiles(kv_capacity=None, weight_gib=0.2)
    m, e = p.model("Agg"), p.engine
    for tp in (1, 2, 4):
        assert kv_capacity_tokens(m, e, 1.0, tp) == int((tp * 1.0 * 0.5 - 0.2) * GIB // 1024)
    # Measured on one GPU (C tokens): the same law, C per rank plus the weight copies freed.
    p = hand_profiles(kv_capacity=50, weight_gib=0.25)
    m = p.model("Agg")
    assert kv_capacity_tokens(m, e, 1.0, 1) == 50
    assert kv_capacity_tokens(m, e, 1.0, 2) == 100 + int(0.25 * GIB // 1024)


def test_simulator_uses_the_combined_kv_cache():
    """Two 40-token sequences need 80 tokens of KV: one GPU's 50 cannot hold both to the end (a
    preemption), two GPUs' 100 can, which is what the hand computation above assumes."""
    reqs, replay = two_requests(prompt=10, out=30)
    one = Plan("aggregator", "x", (WorkerPlan(0, (Session("Agg", tuple(sorted(reqs))),)),))
    single = SimBackend(Cluster.uniform(1, 1.0), hand_profiles()).run(one, reqs, replay)
    assert single.sessions[0].preemptions > 0
    tp = SimBackend(Cluster.uniform(2, 1.0), hand_profiles()).run(tp_plan(reqs), reqs, replay)
    assert [s.preemptions for s in tp.sessions] == [0, 0]


def test_tp_attention_sharded_by_heads_scales_context_terms_by_degree():
    """attention: heads -- the measured step speedup covers the weight-bound terms only; KV reads and
    prefill attention are split across the ranks' heads, 1/degree each."""
    raw = hand_raw()
    raw["engine"]["tensor_parallel"]["attention"] = "heads"
    p = parse_profiles(raw)
    one, two = CostModel(p.model("Agg"), p.engine), CostModel(p.model("Agg"), p.engine, tp=2)
    assert two.decode_base_s(3) == pytest.approx(one.decode_base_s(3) / SPEEDUP)
    assert two.decode_ms_per_ctx_token == pytest.approx(CTX_MS / 2)
    assert two.prefill_ms_per_len2 == pytest.approx(LEN2_MS / 2)
    # 7 steps of 3 sequences from 100 context tokens: base part / 1.6, attention part / 2.
    ctx_total = 7 * 100 + 3 * 7 * 6 / 2
    expect = 7 * (STEP_MS + TOKEN_MS * 3) / SPEEDUP + CTX_MS * ctx_total / 2
    assert two.decode_run_s(3, 100, 7) * 1e3 == pytest.approx(expect)
    raw["engine"]["tensor_parallel"]["attention"] = "all"
    with pytest.raises(ConfigError, match="attention"):
        parse_profiles(raw)


def test_tp_token_speedup_scales_the_per_token_work_and_step_speedup_the_fixed_costs():
    """token_speedup (measured on prefill-bound batches): the linear per-token term and attention
    by it, the per-step and per-sequence terms by step_speedup; a degree it lacks and a profile
    without it scale every term by step_speedup; degrees step_speedup lacks and values out of
    (0, degree] are refused naming the field."""
    raw = hand_raw()
    raw["engine"]["tensor_parallel"]["token_speedup"] = {2: 1.9}
    p = parse_profiles(raw)
    one, two = CostModel(p.model("Agg"), p.engine), CostModel(p.model("Agg"), p.engine, tp=2)
    ctx_total = 7 * 100 + 3 * 7 * 6 / 2
    expect = 7 * STEP_MS / SPEEDUP + 7 * TOKEN_MS * 3 / 1.9 + CTX_MS * ctx_total / 1.9
    assert two.decode_run_s(3, 100, 7) * 1e3 == pytest.approx(expect)
    expect = STEP_MS / SPEEDUP + (TOKEN_MS * 40 + LEN2_MS * 800.0) / 1.9
    assert two.prefill_s(40, 800.0, 2) * 1e3 == pytest.approx(expect)
    assert one.prefill_s(40, 800.0, 2) * 1e3 == pytest.approx(STEP_MS + TOKEN_MS * 40 + LEN2_MS * 800.0)
    assert p.engine.tp().work_speedup(2) == 1.9 and p.engine.tp().speedup(2) == SPEEDUP
    for bad, said in (({4: 1.5}, "token_speedup"), ({2: 2.5}, "speedup must lie in (0, 2]"), ([1.9], "token_speedup")):
        raw["engine"]["tensor_parallel"]["token_speedup"] = bad
        with pytest.raises(ConfigError, match=re.escape(said)):
            parse_profiles(raw)


def test_tp_cost_model_scales_every_term():
    p = hand_profiles()
    one, two = CostModel(p.model("Agg"), p.engine), CostModel(p.model("Agg"), p.engine, tp=2)
    assert two.decode_run_s(3, 100, 7) == pytest.approx(one.decode_run_s(3, 100, 7) / SPEEDUP)
    assert two.prefill_s(40, 800.0, 2) == pytest.approx(one.prefill_s(40, 800.0, 2) / SPEEDUP)
    assert load_time_s(p.model("Agg"), p.engine, 2) == LOAD_S + TP_LOAD_S
    assert load_time_s(p.model("Agg"), p.engine, 1) == LOAD_S
    raw = hand_raw()
    raw["engine"]["tensor_parallel"].update(step_speedup={2: 1.5, 4: 2.0}, load_overhead_s={2: 4.0, 4: 9.0})
    per_degree = parse_profiles(raw)
    assert [load_time_s(per_degree.model("Agg"), per_degree.engine, d) for d in (1, 2, 4)] == [LOAD_S, LOAD_S + 4, LOAD_S + 9]


@pytest.mark.parametrize("tp, match", [
    ({"step_speedup": {2: 2.5}, "load_overhead_s": 1, "source": "x"}, r"step_speedup.2.*\(0, 2\]"),
    ({"step_speedup": {2: 1.5}, "load_overhead_s": -1, "source": "x"}, "load_overhead_s must be >= 0"),
    ({"step_speedup": {2: 1.5}, "load_overhead_s": 1, "warmup_s": -1, "source": "x"}, "warmup_s must be >= 0"),
    ({"step_speedup": {2: 1.5}, "load_overhead_s": 1, "warmup_s": {4: 1}, "source": "x"}, "warmup_s.*per degree"),
    ({"step_speedup": {2: 1.5}, "load_overhead_s": 1}, "missing field 'source'"),
    ({"step_speedup": {2: 1.5}, "load_overhead_s": 1, "source": " "}, "source"),
    ({"step_speedup": {"two": 1.5}, "load_overhead_s": 1, "source": "x"}, "integer >= 1"),
    ({"step_speedup": {2: "fast"}, "load_overhead_s": 1, "source": "x"}, "expected a number"),
    ({"step_speedup": {2: 1.5}, "load_overhead_s": 1, "source": "x", "nccl": 1}, "unknown field"),
    ({"step_speedup": {2: 1.5, 4: 2}, "load_overhead_s": {2: 1}, "source": "x"}, "one per degree"),
])
def test_bad_tp_profile_is_one_config_error(tp, match):
    raw = hand_raw()
    raw["engine"]["tensor_parallel"] = tp
    with pytest.raises(ConfigError, match=match):
        parse_profiles(raw)


def test_profile_without_tp_section_names_the_fix():
    raw = hand_raw(kv_capacity=100)
    del raw["engine"]["tensor_parallel"]
    p = parse_profiles(raw)
    reqs, _ = two_requests()
    with pytest.raises(ConfigError, match="no tensor_parallel scaling.*placement=scheduled"):
        build_tp_problem("aggregator", list(reqs.values()), Cluster.uniform(2, 1.0), p)
    # One worker needs no scaling: a TP-1 engine is a single-GPU one.
    assert build_tp_problem("aggregator", list(reqs.values()), Cluster.uniform(1, 1.0), p).models


def test_unprofiled_degree_and_missing_section_name_the_fix():
    p = hand_profiles()
    with pytest.raises(ConfigError, match="no entry for TP degree 3"):
        CostModel(p.model("Agg"), p.engine, tp=3)
    reqs, _ = two_requests()
    with pytest.raises(ConfigError, match="placement=scheduled"):
        build_tp_problem("aggregator", list(reqs.values()), Cluster.uniform(3, 1.0), p)


# ---------------------------------------------------------------- plans


def test_tp_scheduler_spans_every_worker_and_validates():
    p = hand_profiles()
    reqs, _ = two_requests()
    problem = build_tp_problem("aggregator", list(reqs.values()), Cluster.uniform(2, 1.0), p)
    plan = schedule("tensor_parallel", problem, list(reqs.values()))
    assert [len(w.sessions) for w in plan.workers] == [1, 1]
    assert plan.workers[0].sessions[0] == plan.workers[1].sessions[0]
    assert plan.workers[0].sessions[0].workers == (0, 1)
    assert plan.params["tp"] == 2
    d = problem.models[0]
    assert d.load_s == LOAD_S + TP_LOAD_S
    assert Plan.from_json(plan.to_json()) == plan


def test_tp_problem_rejects_a_model_that_does_not_fit_the_combined_memory():
    p = hand_profiles(kv_capacity=None, weight_gib=10.0)
    reqs, _ = two_requests()
    with pytest.raises(ConfigError, match="does not fit one tensor-parallel engine"):
        build_tp_problem("aggregator", list(reqs.values()), Cluster.uniform(2, 1.0), p)


def _valid():
    reqs, _ = two_requests()
    return tp_plan(reqs), list(reqs.values()), {"Agg": {0, 1}}


def test_validate_counts_a_tp_session_once():
    plan, reqs, fits = _valid()
    assert validate_plan(plan, reqs, fits) is plan


def test_validate_rejects_a_rank_that_does_not_list_the_session():
    plan, reqs, fits = _valid()
    bad = Plan(plan.stage, plan.policy, (plan.workers[0], WorkerPlan(1, ())))
    with pytest.raises(PlanError, match="listed on workers"):
        validate_plan(bad, reqs, fits)


def test_validate_rejects_a_rank_the_model_does_not_fit():
    plan, reqs, _ = _valid()
    with pytest.raises(PlanError, match="worker 1, where it does not fit"):
        validate_plan(plan, reqs, {"Agg": {0}})


def test_validate_rejects_inconsistent_tp_order():
    reqs = {f"q{i}/agg": Request(f"q{i}/agg", f"q{i}", "Agg", 10, "aggregator") for i in range(4)}
    a, b = Session("Agg", ("q0/agg", "q1/agg"), (0, 1)), Session("Agg", ("q2/agg", "q3/agg"), (0, 1))
    plan = Plan("aggregator", "x", (WorkerPlan(0, (a, b)), WorkerPlan(1, (b, a))))
    with pytest.raises(PlanError, match="different orders"):
        validate_plan(plan, list(reqs.values()), {"Agg": {0, 1}})
    with pytest.raises(PlanError, match="never started"):  # the simulator refuses to hang on it
        SimBackend(Cluster.uniform(2, 1.0), hand_profiles()).run(plan, reqs, {r: Outcome(5, "A") for r in reqs})


def test_validate_rejects_a_span_without_the_listing_worker():
    plan, reqs, fits = _valid()
    s = Session("Agg", plan.workers[0].sessions[0].request_ids, (1, 2))
    bad = Plan(plan.stage, plan.policy, (WorkerPlan(0, (s,)),))
    with pytest.raises(PlanError, match="must be distinct and include 0"):
        validate_plan(bad, reqs, fits)


# ---------------------------------------------------------------- pipeline


@pytest.fixture(scope="module")
def small(profiles):
    return generate(SyntheticSpec(preset="mmlu_pro", n_queries=150), profiles, seed=3)


def _run(small, profiles, scheduler, placement, tau=None):
    policy = AggregationConfig(policy="always", tau=None) if tau is None else AggregationConfig(policy="threshold", tau=tau)
    cluster = Cluster.uniform(4, 80.0)
    return run_pipeline(small, cluster, profiles, SchedulerConfig(name=scheduler, max_models_per_worker=2),
                        SimBackend(cluster, profiles), replace(policy, placement=placement))


def test_placement_tp_runs_one_engine_over_all_workers(small, profiles):
    res = _run(small, profiles, "round_robin", "tp")
    plan, trace = res.aggregator.plan, res.aggregator.trace
    assert res.placement == "tp" and plan.policy == "tensor_parallel"
    assert all(s.workers == (0, 1, 2, 3) for w in plan.workers for s in w.sessions)
    assert {s.worker for s in trace.sessions} == {0, 1, 2, 3} and {s.tp_size for s in trace.sessions} == {4}
    assert len(trace.requests) == len(small.queries)
    sched = _run(small, profiles, "round_robin", "scheduled")
    assert sched.placement == "scheduled" and sched.aggregator.plan.policy == "round_robin"
    assert {s.tp_size for s in sched.aggregator.trace.sessions} == {1}
    # Same experts, same gate: only the aggregator stage differs.
    assert sched.expert.trace.makespan_s == res.expert.trace.makespan_s
    assert sched.aggregator.trace.makespan_s != res.aggregator.trace.makespan_s


def test_tp_aggregator_stage_is_the_same_in_both_arms(small, profiles):
    """Under placement=tp the aggregator stage depends only on which queries reach it (the gate)."""
    rr, ilp = (_run(small, profiles, s, "tp", tau=1.0) for s in ("round_robin", "ilp"))
    assert {d.query_id for d in rr.decisions if not d.skip} == {d.query_id for d in ilp.decisions if not d.skip}
    assert rr.aggregator.trace.makespan_s == pytest.approx(ilp.aggregator.trace.makespan_s, rel=1e-12)
    assert rr.aggregator.plan == ilp.aggregator.plan


def test_unknown_placement_is_a_config_error(small, profiles):
    with pytest.raises(ConfigError, match="aggregation.placement"):
        _run(small, profiles, "round_robin", "everywhere")


def test_tp_without_scaling_for_the_cluster_fails_before_the_expert_stage(small, profiles):
    """TP degree 3 is not measured; with derivation refused (tensor_parallel.derive: none) the run
    stops before the expert stage. (With the default derive: amdahl it is derived and runs:
    tests/profiles/test_tp_scaling.py.)"""
    class NoRun:
        def run(self, *a):
            raise AssertionError("the expert stage ran")

    refusing = replace(profiles, engine=replace(profiles.engine,
                                                tensor_parallel=replace(profiles.engine.tp(), derive="none")))
    cluster = Cluster.uniform(3, 80.0)
    with pytest.raises(ConfigError, match="TP degree 3.*placement=scheduled"):
        run_pipeline(small, cluster, refusing, SchedulerConfig(name="round_robin"), NoRun(),
                     AggregationConfig(policy="always", tau=None))


def test_cli_summary_names_the_placement():
    from mosaic.run.app import run
    from tests.helpers import config

    out = run(config("workload=synth_small", "scheduler=round_robin", "aggregation=always"))
    assert out.summary["aggregator_placement"] == "tp" and out.summary["aggregator_tp_size"] == 4
    out = run(config("workload=synth_small", "scheduler=round_robin", "aggregation=always",
                     "aggregation.placement=scheduled"))
    assert out.summary["aggregator_placement"] == "scheduled" and out.summary["aggregator_tp_size"] == 1


# ---------------------------------------------------------------- vLLM backend (no engine started)


class RecordingLauncher:
    """Stands in for the worker processes: records the specs and answers every request."""

    def __init__(self):
        self.specs = []

    def run(self, specs, timeout_s, on_progress=None):
        self.specs = specs
        out = []
        for spec in specs:
            sessions, records = [], []
            for s in spec["sessions"]:
                sessions.append({"index": s["index"], "model": s["model"], "n_requests": len(s["requests"]),
                                 "load_start_s": 1.0, "load_end_s": 2.0, "run_start_s": 2.0, "run_end_s": 5.0,
                                 "error": None})
                records += [{"request_id": r["id"], "start_s": 2.0, "first_token_s": 3.0, "finish_s": 4.0,
                             "output_tokens": r["max_tokens"], "session": s["index"]} for r in s["requests"]]
            out.append({"worker": spec["worker"], "sessions": sessions, "records": records, "fatal": None})
        return out


TINY = {"name": "t", "engine": {"max_model_len": 256}, "models": {"Agg": {"path": "/models/agg"}}}


@pytest.mark.parametrize("device, cpu_tp, want_env, want_args", [
    ("cuda", True, {"CUDA_VISIBLE_DEVICES": "0,1"}, {"tensor_parallel_size": 2}),
    ("cpu", True, {"CUDA_VISIBLE_DEVICES": ""}, {"tensor_parallel_size": 2, "distributed_executor_backend": "mp"}),
    ("cpu", False, {"CUDA_VISIBLE_DEVICES": ""}, {"tensor_parallel_size": 1}),
])
def test_vllm_runs_a_tp_session_as_one_engine(device, cpu_tp, want_env, want_args):
    from mosaic.backends.vllm.backend import VllmBackend

    launcher = RecordingLauncher()
    be = VllmBackend(Cluster.uniform(2, 80.0), hand_profiles(), models=TINY, device=device,
                     cpu_tensor_parallel=cpu_tp, launcher=launcher)
    reqs, replay = two_requests()
    trace = be.run(tp_plan(reqs), reqs, replay)
    assert [s["worker"] for s in launcher.specs] == [0]        # one process: the lead rank's
    spec = launcher.specs[0]
    assert want_env.items() <= spec["env"].items()
    assert want_args.items() <= spec["sessions"][0]["engine_args"].items()
    if device == "cpu" and cpu_tp:   # one core set per rank
        assert len(spec["env"]["VLLM_CPU_OMP_THREADS_BIND"].split("|")) == 2
    # Every rank's timeline shows the session; the mode says how it ran.
    assert sorted(s.worker for s in trace.sessions) == [0, 1]
    assert {s.tp_size for s in trace.sessions} == {2}
    mode = trace.sessions[0].tp_mode
    assert ("not tensor parallel" in mode) == (device == "cpu" and not cpu_tp)
    assert sorted(r.request_id for r in trace.requests) == sorted(reqs)


def test_vllm_rejects_mixed_tp_plans():
    from mosaic.backends.vllm.backend import VllmBackend

    reqs, replay = two_requests()
    solo = Request("q9/agg", "q9", "Agg", 10, "aggregator")
    tp = Session("Agg", tuple(sorted(reqs)), (0, 1))
    plan = Plan("aggregator", "x", (WorkerPlan(0, (tp,)), WorkerPlan(1, (Session("Agg", ("q9/agg",)), tp))))
    be = VllmBackend(Cluster.uniform(2, 80.0), hand_profiles(), models=TINY, device="cpu",
                     launcher=RecordingLauncher())
    with pytest.raises(ConfigError, match="mixes tensor-parallel sessions"):
        be.run(plan, {**reqs, "q9/agg": solo}, {**replay, "q9/agg": Outcome(5, "A")})


def test_profile_tp_keeps_the_first_batch_warm_up_out_of_the_step_time():
    from mosaic.fitting.real_engine import step_and_warmup

    # A TP engine's first batch pays a one-off warm-up: timing it alone made steps look 10x slower.
    step, warm = step_and_warmup([3.35, 0.61, 0.07], out=16, long_out=144)
    assert step == pytest.approx(0.54 / 128) and warm == pytest.approx(3.28)
    assert step_and_warmup([0.05, 0.5, 0.07], 16, 144)[1] == 0.0   # no warm-up: not negative
