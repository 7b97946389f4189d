"""The cost model sees the calibration split only: a test-split length must never reach it."""
from dataclasses import replace

import pytest

from mosaic.cluster import Cluster
from mosaic.costs.predict import build_problem, fixed_session_s, session_estimate
from mosaic.core.errors import ConfigError
from mosaic.profiles import load_profiles
from mosaic.workload.build import build_workload
from mosaic.workload.types import LengthStats, Outcome
from tests.helpers import needs_shared

CLUSTER = Cluster.uniform(4, 80.0)
WORKLOADS = {
    "synthetic": {"kind": "synthetic", "preset": "gpqa", "n_queries": 120},
    "questions": {"kind": "questions", "dataset": "medmcqa", "n_queries": 120},
    "trace": {"kind": "trace", "dataset": "mmlu_pro", "questions": "MMLU_Pro_test.json",
              "calibration_questions": "MMLU_Pro_train.json", "n_queries": 120,
              "experts": {m: {"file": f"mmlu_pro/{m}.zip", "format": "mmlu_pro_zip"}
                          for m in ("Meta-Llama-3_1-8B-Instruct", "Mistral-7B-Instruct-v0.2", "mathstral-7B")},
              "aggregator": {"file": "mmlu_pro/Meta-Llama-3_1-70B-Instruct.zip", "format": "mmlu_pro_zip",
                             "profile": "LlamaR1"}},
}


@pytest.fixture(scope="module")
def paper():
    return load_profiles("paper_a100")


@pytest.fixture(scope="module", params=[pytest.param(k, marks=() if k == "synthetic" else needs_shared)
                                        for k in sorted(WORKLOADS)])
def workload(request, paper):
    return build_workload(WORKLOADS[request.param], paper, 0)


def problem(w, profiles, cost_model="auto", calibration=None):
    reqs = w.expert_requests()
    return build_problem("expert", reqs, CLUSTER, profiles, w.expert_models,
                         w.calibration if calibration is None else calibration, cost_model)


@pytest.mark.slow
@pytest.mark.parametrize("cost_model", ["regression", "analytic"])
def test_test_split_lengths_never_reach_the_cost_model(workload, paper, cost_model):
    before = problem(workload, paper, cost_model)
    leaked = replace(workload, outcomes={rid: Outcome(10**6, o.answer) for rid, o in workload.outcomes.items()})
    assert problem(leaked, paper, cost_model) == before          # T_m and tau_m identical
    # ... while the calibration statistics do drive it: longer calibration answers, longer sessions.
    longer = {m: replace(s, mean_output=2 * s.mean_output, max_output=2 * s.max_output)
              for m, s in workload.calibration.items()}
    after = problem(workload, paper, cost_model, longer)
    for a, b in zip(before.models, after.models):
        assert b.session_s > a.session_s and b.per_request_s > a.per_request_s


def test_every_scheduled_model_has_calibration_statistics(workload):
    assert set(workload.expert_models) | {workload.aggregator} <= set(workload.calibration)
    for s in workload.calibration.values():
        assert s.n >= 100 and 1 <= s.mean_output <= s.max_output and s.source


def test_pipeline_costs_from_the_workload_calibration(paper):
    from mosaic.config.schema import AggregationConfig
    from mosaic.run.pipeline import run_pipeline
    from mosaic.config.schema import SchedulerConfig
    from mosaic.backends.sim.backend import SimBackend

    w = build_workload({"kind": "synthetic", "preset": "gpqa", "n_queries": 40}, paper, 0)
    # 4x longer, within what the context leaves (16000: under any prompt's room and the aggregator's half)
    longer = replace(w, outcomes={rid: Outcome(min(4 * o.output_tokens, 16000), o.answer) for rid, o in w.outcomes.items()})
    run = [run_pipeline(x, CLUSTER, paper, SchedulerConfig(name="ilp"), SimBackend(CLUSTER, paper),
                        AggregationConfig(policy="threshold", tau=1.0)) for x in (w, longer)]
    assert run[0].expert.problem == run[1].expert.problem == problem(w, paper)
    assert run[1].expert.trace.makespan_s > run[0].expert.trace.makespan_s   # the runs did differ


def test_regression_and_analytic_predictors(paper):
    m, engine = paper.model("LlamaR1"), paper.engine
    stats = LengthStats(350, 3146.0, 21000, 250.0)
    reg = session_estimate(m, engine, 80, 1000, 250.0, stats, "regression")
    ana = session_estimate(m, engine, 80, 1000, 250.0, stats, "analytic")
    assert reg == pytest.approx(m.session_fit.predict(1000, 3146.0, 21000, 250.0, 350))
    assert session_estimate(m, engine, 80, 1000, 250.0, stats, "auto") == reg
    assert 0.5 < reg / ana < 2.0                 # two models of the same engine roughly agree
    # More requests or longer answers take longer, whichever predictor.
    for cm in ("regression", "analytic"):
        t = session_estimate(m, engine, 80, 1000, 250.0, stats, cm)
        assert session_estimate(m, engine, 80, 2000, 250.0, stats, cm) > t
        assert session_estimate(m, engine, 80, 1000, 250.0, replace(stats, mean_output=5000.0), cm) > t


def test_auto_falls_back_to_analytic_without_a_fit(profiles):
    m = profiles.model("LlamaR1")               # moa6_a100: no session_fit
    assert m.session_fit is None
    stats = LengthStats(350, 3000.0, 20000, 250.0)
    assert (session_estimate(m, profiles.engine, 80, 500, 250.0, stats, "auto")
            == session_estimate(m, profiles.engine, 80, 500, 250.0, stats, "analytic"))
    with pytest.raises(ConfigError, match="cost_model=regression: model LlamaR1 has no session_fit"):
        session_estimate(m, profiles.engine, 80, 500, 250.0, stats, "regression")
    with pytest.raises(ConfigError, match="scheduler.cost_model: 'magic' is not one of"):
        session_estimate(m, profiles.engine, 80, 500, 250.0, stats, "magic")


def test_cost_model_is_a_config_field():
    from mosaic.run.app import run
    from tests.helpers import config

    with pytest.raises(ConfigError, match="scheduler.cost_model"):
        run(config("scheduler.cost_model=magic", "workload=synth_small"))


# ------------------------------------------------------------------ shard_cost=affine

def test_fixed_part_is_the_chord_intercept():
    def fixed(session_at, n, workers):  # the caller passes T(n) it has already computed
        return fixed_session_s(session_at, n, workers, session_at(n))

    # An affine T(x) = 100 + 2x is its own chord: the fixed part is exactly 100.
    assert fixed(lambda n: 100 + 2 * n, 400, 4) == pytest.approx(100.0)
    # Concave T(x) = 10 sqrt(x), n = 400 over 4 workers: chord from x = 100 (T = 100) to 400 (T = 200),
    # slope 1/3, intercept 200 - 400/3.
    assert fixed(lambda n: 10 * n ** 0.5, 400, 4) == pytest.approx(200 - 400 / 3)
    # Proportional T has no fixed part; a model that cannot be split has none either.
    assert fixed(lambda n: 3.0 * n, 400, 4) == pytest.approx(0.0, abs=1e-9)
    assert fixed(lambda n: 100 + 2 * n, 1, 4) == 0.0
    assert fixed(lambda n: 100 + 2 * n, 400, 1) == 0.0
    # Clipped to [0, T(n)]: a convex T would give a negative intercept.
    assert fixed(lambda n: n * n, 400, 4) == 0.0


def test_affine_shard_cost_keeps_t_m_and_moves_its_fixed_part_to_each_replica(paper):
    w = build_workload(WORKLOADS["synthetic"], paper, 0)
    reqs = w.expert_requests()
    prop = build_problem("expert", reqs, CLUSTER, paper, w.expert_models, w.calibration)
    aff = build_problem("expert", reqs, CLUSTER, paper, w.expert_models, w.calibration, "auto", "affine")
    assert all(d.fixed_s == 0.0 for d in prop.models)
    for p, a in zip(prop.models, aff.models):
        assert a.session_s == p.session_s and a.load_s == p.load_s   # one replica costs what it did
        assert a.overhead_s + a.per_request_s * a.n == pytest.approx(p.load_s + p.session_s)
        stats = w.calibration[a.model]
        prompt = sum(r.prompt_tokens for r in reqs if r.model == a.model) / a.n
        small = -(-a.n // CLUSTER.n)
        t_small = session_estimate(paper.model(a.model), paper.engine, 80.0, small, prompt, stats)
        # The chord through (n/N, T(n/N)): a replica with the smallest share is costed at T(n/N).
        assert a.fixed_s + a.per_request_s * small == pytest.approx(t_small, rel=1e-9)
    reasoning = [a for a in aff.models if a.model in ("LlamaR1", "QwenR1")]
    assert reasoning and all(a.fixed_s > 0 for a in reasoning)   # their longest trace decodes alone


def test_shard_cost_is_a_config_field():
    from mosaic.run.app import run
    from tests.helpers import config

    with pytest.raises(ConfigError, match=r"scheduler.shard_cost: 'linear' is not one of \['proportional', 'affine'\]"):
        run(config("scheduler.shard_cost=linear", "workload=synth_small"))
    with pytest.raises(ConfigError, match="scheduler.shard_cost"):
        build_problem("expert", [], CLUSTER, load_profiles("paper_a100"), shard_cost="magic")


def test_an_affine_run_records_its_setting_and_answers_every_request():
    from mosaic.run.app import run
    from tests.helpers import config

    out = run(config("scheduler=ilp", "scheduler.shard_cost=affine", "workload=synth_small"))
    assert out.summary["settings"]["shard_cost"] == "affine"
    assert out.summary["n_failed_requests"] == 0
    assert out.summary["n_expert_requests"] == len(out.result.expert.trace.requests) > 0


def test_memory_error_counts_the_utilisation_and_agrees_with_the_fit_rule():
    from mosaic.cluster import Cluster
    from mosaic.workload.types import Request

    paper = load_profiles("paper_a100")
    reqs = [Request("q/LlamaR1", "q", "LlamaR1", 100, "expert")]
    with pytest.raises(ConfigError, match=r"model LlamaR1 needs 21\.1 GiB of GPU memory .* / gpu_memory_utilization 0\.9"):
        build_problem("expert", reqs, Cluster.uniform(1, 21.0), paper)
    assert build_problem("expert", reqs, Cluster.uniform(1, 21.2), paper).fits["LlamaR1"] == frozenset({0})
