"""The cost model sees the calibration split only: a test-split length must never reach it."""
from dataclasses import replace

import pytest

from mosaic.cluster import Cluster
from mosaic.costs import build_problem, session_estimate
from mosaic.errors import ConfigError
from mosaic.profiles import load_profiles
from mosaic.workload.build import build_workload
from mosaic.workload.types import LengthStats, Outcome

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


@pytest.fixture(scope="module", params=sorted(WORKLOADS))
def workload(request, paper):
    return build_workload(WORKLOADS[request.param], paper, 0)


def problem(w, profiles, cost_model="auto", calibration=None):
    reqs = w.expert_requests()
    return build_problem("expert", reqs, CLUSTER, profiles, w.expert_models,
                         w.calibration if calibration is None else calibration, cost_model)


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
    from mosaic.aggregation import AggregationPolicy
    from mosaic.pipeline import run_pipeline
    from mosaic.schedulers import SchedulerParams
    from sim.backend import SimBackend

    w = build_workload({"kind": "synthetic", "preset": "gpqa", "n_queries": 40}, paper, 0)
    longer = replace(w, outcomes={rid: Outcome(4 * o.output_tokens, o.answer) for rid, o in w.outcomes.items()})
    run = [run_pipeline(x, CLUSTER, paper, "ilp", SchedulerParams(), SimBackend(CLUSTER, paper),
                        AggregationPolicy("threshold", 1.0)) for x in (w, longer)]
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
    from mosaic.app import run
    from tests.helpers import config

    with pytest.raises(ConfigError, match="scheduler.cost_model"):
        run(config("scheduler.cost_model=magic", "workload=synth_small"))
