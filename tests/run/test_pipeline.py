"""End-to-end pipeline through the real Hydra config (small workloads)."""
import pytest

from mosaic.run.app import run
from mosaic.core.errors import ConfigError
from tests.helpers import config

SMALL = ("workload=synth_small",)


def test_same_seed_identical_summary():
    a = run(config(*SMALL, "seed=7")).summary
    b = run(config(*SMALL, "seed=7")).summary
    a["solver"]["solve_s"] = b["solver"]["solve_s"] = 0  # wall-clock, not simulated
    if a["aggregator_solver"]:  # None when the aggregator is not scheduled (aggregation.placement=tp)
        a["aggregator_solver"]["solve_s"] = b["aggregator_solver"]["solve_s"] = 0
    assert a == b
    c = run(config(*SMALL, "seed=8")).summary
    assert c["end_to_end_s"] != a["end_to_end_s"]


def test_every_query_gets_one_answer_and_aggregator_runs_only_when_needed():
    out = run(config(*SMALL, "aggregation=tau067"))
    res = out.result
    assert set(res.final_answers) == {q.id for q in res.workload.queries}
    ran = {r.query_id for r in res.aggregator.trace.requests}
    for d in res.decisions:
        assert (d.query_id in ran) != d.skip
        if d.skip:
            assert res.final_answers[d.query_id] == d.majority
    assert out.summary["n_aggregator_requests"] == len(ran)
    assert out.summary["skip_rate"] == pytest.approx(1 - len(ran) / len(res.workload.queries))


def test_thresholds_are_nested():
    always = run(config(*SMALL, "aggregation=always")).summary
    tau1 = run(config(*SMALL, "aggregation=tau1")).summary
    tau067 = run(config(*SMALL, "aggregation=tau067")).summary
    assert always["skip_rate"] == 0
    assert always["accuracy"] == pytest.approx(always["accuracy_always_aggregate"])
    assert 0 < tau1["skip_rate"] < tau067["skip_rate"] < 1
    # Skipping shortens the aggregator stage; the expert stage is untouched.
    assert always["expert_stage_s"] == tau1["expert_stage_s"] == tau067["expert_stage_s"]
    assert always["aggregator_stage_s"] > tau1["aggregator_stage_s"] > tau067["aggregator_stage_s"]


@pytest.mark.slow
def test_ilp_beats_round_robin_on_default_workload():
    ilp = run(config()).summary
    rr = run(config("scheduler=round_robin")).summary
    assert ilp["workload"] == rr["workload"] == "synth_mmlu_pro" and ilp["seed"] == rr["seed"]
    assert ilp["expert_stage_s"] < rr["expert_stage_s"]
    assert ilp["end_to_end_s"] < rr["end_to_end_s"]
    assert ilp["accuracy"] == rr["accuracy"]  # scheduling never changes answers


@pytest.mark.parametrize("overrides, match", [
    (("scheduler.name=nope",), "scheduler.name: unknown scheduler 'nope'"),
    (("cluster.n_workers=0",), "cluster.n_workers must be an integer >= 1"),
    (("cluster.memory_gib=20",), "model .* needs .* GiB.*raise cluster.memory_gib"),
    (("scheduler.max_models_per_worker=1",), "K\\*N = 1\\*4 = 4 worker slots for [56] models"),
    (("workload.profiles=missing_set",), "profiles: no file 'missing_set'"),
    (("backend.name=gpu9000",), "backend.name: unknown backend"),
    # was the constructor's TypeError text ("got an unexpected keyword argument")
    (("+backend.options.foo=1",), "backend.options.foo: backend 'sim' has no option 'foo'; its options are none"),
])
def test_bad_configuration_is_a_clear_error(overrides, match):
    with pytest.raises(ConfigError, match=match):
        run(config(*SMALL, *overrides))


def test_aggregator_prompt_is_built_from_expert_texts():
    from mosaic.run.pipeline import aggregator_requests
    from mosaic.trace import RequestRecord, Trace
    from mosaic.workload.tokens import estimate_tokens
    from mosaic.workload.types import Query, Workload

    q = Query("q1", "all", 30, "B", ("A1", "A2"), 0.0, "What is 2+2? The options are: (A) 3 (B) 4")
    wl = Workload("t", 0, (q,), ("A1", "A2"), "AGG")
    recs = tuple(RequestRecord(f"q1/{m}", "q1", m, "expert", 0, 0, 0.0, 0.1, 0.2, 30, 7, None, None, t)
                 for m, t in (("A1", "2+2 is 4. The answer is (B)"), ("A2", "I think (A). The answer is (A)")))
    trace = Trace("expert", "vllm", 0.2, recs, (), ())
    (req,), cut = aggregator_requests(wl, trace, {"q1"}, max_prompt=4096)
    assert q.text in req.prompt and "The answer is (B)" in req.prompt and "Response 2 (A2)" in req.prompt
    assert req.prompt_tokens == estimate_tokens(req.prompt)
    # Without texts (replay, simulator) the prompt is a length only.
    bare = Trace("expert", "sim", 0.2, tuple(r.__class__(**{**r.__dict__, "text": None}) for r in recs), (), ())
    (req2,), _ = aggregator_requests(wl, bare, {"q1"}, max_prompt=4096)
    assert req2.prompt is None and req2.prompt_tokens == 30 + 14 + 64 and cut == ()


def test_an_aggregator_prompt_past_half_the_context_is_cut_and_counted():
    """Cut to engine.aggregator_cap without a word before (10 of 132 prompts of the default
    synth_small run); now counted, and the text cut with the length (a real engine was sent the
    whole text under a shorter length)."""
    from mosaic.run.pipeline import aggregator_requests
    from mosaic.trace import RequestRecord, Trace
    from mosaic.workload.tokens import estimate_tokens
    from mosaic.workload.types import Query, Workload

    q = Query("q1", "all", 30, "B", ("A1", "A2"), 0.0, "What is 2+2? The options are: (A) 3 (B) 4")
    short = Query("q2", "all", 30, "B", ("A1", "A2"), 0.0, "What is 1+3? The options are: (A) 3 (B) 4")
    wl = Workload("t", 0, (q, short), ("A1", "A2"), "AGG")
    texts = {"q1/A1": "x" * 4000 + " The answer is (B)", "q1/A2": "short. The answer is (A)",
             "q2/A1": "(B)", "q2/A2": "(B)"}
    recs = tuple(RequestRecord(rid, rid[:2], rid[3:], "expert", 0, 0, 0.0, 0.1, 0.2, 30, 7, None, None, t)
                 for rid, t in texts.items())
    (req, ok), cut = aggregator_requests(wl, Trace("expert", "vllm", 0.2, recs, (), ()), {"q1", "q2"}, max_prompt=512)
    assert cut == ("q1/agg",) and req.prompt_tokens == 512 and estimate_tokens(req.prompt) <= 512
    assert estimate_tokens(req.prompt) > 500                       # cut to the cap, not below it
    assert "short. The answer is (A)" in req.prompt                 # the short response kept whole
    assert req.prompt.count("x") < 4000 and "x The answer is (B)" in req.prompt   # the long one: its end
    assert ok.prompt_tokens == estimate_tokens(ok.prompt) < 512
    bare = Trace("expert", "sim", 0.2, tuple(r.__class__(**{**r.__dict__, "text": None, "output_tokens": 400})
                                             for r in recs), (), ())
    reqs, cut = aggregator_requests(wl, bare, {"q1", "q2"}, max_prompt=512)
    assert cut == ("q1/agg", "q2/agg") and all(r.prompt_tokens == 512 and r.prompt is None for r in reqs)


def test_expert_requests_carry_question_prompts():
    from mosaic.workload.types import Query, Workload

    wl = Workload("t", 0, (Query("q1", "all", 30, "B", ("A1",), 0.0, "Why? The options are: (A) x (B) y"),
                           Query("q2", "all", 30, "A", ("A1",))), ("A1",), "AGG")
    a, b = wl.expert_requests()
    assert "Why? The options are" in a.prompt and "The answer is (X)" in a.prompt
    assert b.prompt is None


def test_a_cost_model_the_policy_does_not_read_neither_acts_nor_fails():
    """round_robin never reads scheduler.cost_model: a regression fit the profiles lack failed the
    run; it is recorded as not applied and the plan is the default's."""
    base = run(config("workload=smoke", "scheduler=round_robin")).summary
    other = run(config("workload=smoke", "scheduler=round_robin", "scheduler.cost_model=regression")).summary
    assert other["settings_not_applied"] == ["scheduler.cost_model"]
    assert other["expert_stage_s"] == base["expert_stage_s"] and other["expert_predicted_makespan_s"] == base["expert_predicted_makespan_s"]


def test_a_scheduled_aggregators_fallback_is_printed():
    from mosaic.run.app import format_table, run
    from mosaic.run.builder import compose

    s = run(compose(["workload=synth_small", "scheduler=ilp", "scheduler.time_limit_s=0.0001",
                     "aggregation.placement=scheduled"])).summary
    if not (s["aggregator_solver"] or {}).get("fallback"):
        pytest.skip("the aggregator's ILP finished within 0.1 ms on this machine")
    assert "ILP FALLBACK (aggregator)" in format_table(s)
