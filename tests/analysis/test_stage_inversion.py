"""Stage inversion: the length factor that makes a stage take a given wall, on the simulator."""
from dataclasses import replace

import pytest

from mosaic.backends import make_backend
from mosaic.cluster import Cluster
from mosaic.core.errors import ConfigError
from mosaic.config.schema import SchedulerConfig
from mosaic.run.pipeline import run_stage
from mosaic.profiles import load_profiles
from mosaic.analysis import wall_inversion
from mosaic.analysis.stage_inversion import OK, UNREACHABLE_HIGH, UNREACHABLE_LOW, invert_wall, scale_outcomes
from mosaic.workload.types import Outcome, Request, Workload
from tests.helpers import SHARED_DATA, needs_shared

SHARED = SHARED_DATA / "questions"


def test_bisection_finds_the_factor_of_a_known_wall():
    inv = invert_wall(lambda f: 5.0 + 10.0 * f, 25.0)
    assert inv.status == OK and inv.factor == pytest.approx(2.0, rel=2e-3) and inv.wall_s >= 25.0


def test_targets_beyond_the_range_say_which_side():
    assert invert_wall(lambda f: 100.0 + f, 50.0).status == UNREACHABLE_LOW
    high = invert_wall(lambda f: min(f, 3.0), 10.0, hi=8.0)
    assert high.status == UNREACHABLE_HIGH and high.factor == 8.0 and high.wall_s == 3.0


@pytest.mark.parametrize("kw", [{"target_s": 0.0}, {"target_s": 1.0, "lo": 2.0, "hi": 1.0}])
def test_bad_arguments_are_config_errors(kw):
    with pytest.raises(ConfigError):
        invert_wall(lambda f: f, **kw)


def test_scaling_rounds_keeps_one_token_and_stops_at_the_context_window():
    reqs = [Request("a", "q1", "m", 100, "aggregator"), Request("b", "q2", "m", 900, "aggregator")]
    outs = {"a": Outcome(10, "A"), "b": Outcome(50, None)}
    assert scale_outcomes(reqs, outs, 2.5, 1000) == {"a": Outcome(25, "A"), "b": Outcome(100, None)}
    assert scale_outcomes(reqs, outs, 0.01, 1000)["a"].output_tokens == 1
    assert scale_outcomes(reqs, outs, 50.0, 1000)["b"].output_tokens == 100   # 1000 - 900 prompt
    with pytest.raises(ConfigError):
        scale_outcomes(reqs, outs, 0.0, 1000)


def test_inverting_a_simulated_tp_stage_recovers_the_factor_that_made_its_wall():
    profiles = load_profiles("paper_a100")
    cluster = Cluster.uniform(4, 80.0)
    backend = make_backend("sim", cluster, profiles)
    reqs = [Request(f"q{i}/agg", f"q{i}", "LlamaR1", 500 + 37 * i, "aggregator") for i in range(40)]
    outs = {r.id: Outcome(200 + 97 * i, None) for i, r in enumerate(reqs)}
    wl = Workload("w", 0, (), ("LlamaR1",), "LlamaR1", outs)

    def wall(f):
        scaled = replace(wl, outcomes=scale_outcomes(reqs, outs, f, profiles.engine.max_model_len))
        return run_stage("aggregator", reqs, ("LlamaR1",), SchedulerConfig(), "tp", backend, cluster, profiles,
                         scaled).trace.makespan_s

    target = wall(2.7)
    assert target > wall(1.0) > wall(0.5)          # the wall grows with the lengths
    inv = invert_wall(wall, target)
    assert inv.status == OK and inv.factor == pytest.approx(2.7, rel=0.01)


@needs_shared
def test_script_inverts_both_aggregator_walls_of_a_paper_dataset():
    rows = wall_inversion.aggregator_rows("gpqa")
    by = {r["arm"]: r for r in rows}
    assert by["always"]["requests"] == 198 and by["gated"]["requests"] == round(0.1263 * 198)
    for r in rows:
        if r["status"] == OK:   # the solved factor reproduces the paper's wall
            assert r["wall_at_factor_s"] == pytest.approx(r["paper_wall_s"], rel=0.02)
            # Scaled outputs stop at the context window, so the mean grows by at most the factor.
            assert r["implied_mean_tokens"] <= r["our_mean_tokens"] * r["factor"] + 1
            assert (r["implied_mean_tokens"] > r["our_mean_tokens"]) == (r["factor"] > 1)
    assert "speedup at the paper's skip count" in wall_inversion.render(rows, [])


@needs_shared
def test_script_inverts_each_arms_expert_wall_with_its_own_plan():
    rows = wall_inversion.expert_rows("gpqa")
    assert [r["arm"] for r in rows] == ["baseline", "mosaic"]
    for r in rows:
        assert r["requests"] == 594 and r["routing"] == "paper_table3"   # Table 3's GPQA slots
        assert r["status"] == OK and r["wall_at_factor_s"] == pytest.approx(r["paper_wall_s"], rel=0.02)
        ours, implied = r["LlamaR1_our_mean_tokens"], r["LlamaR1_implied_mean_tokens"]
        assert (implied > ours) == (r["factor"] > 1) and implied <= ours * r["factor"] + 1
    assert "Expert stage" in wall_inversion.render([], rows)
