"""A setting the chosen policy never reads is recorded as not applied, not silently accepted."""
import pytest

from mosaic.config.schema import SchedulerConfig
from mosaic.schedulers.registry import not_applied


@pytest.mark.parametrize("params, expected", [
    (SchedulerConfig(name="round_robin", max_models_per_worker=1), ["scheduler.max_models_per_worker"]),
    (SchedulerConfig(name="round_robin", rr_order="pool"), []),
    (SchedulerConfig(name="ilp", max_models_per_worker=2, node_limit=50), []),
    (SchedulerConfig(name="fifo", replication_cap=2, rr_order="pool"), ["scheduler.replication_cap", "scheduler.rr_order"]),
    (SchedulerConfig(name="engine_aware", time_limit_s=5.0), ["scheduler.time_limit_s"]),
    (SchedulerConfig(name="data_parallel", shard_cost="affine"), ["scheduler.shard_cost"]),
])
def test_not_applied_settings(params, expected):
    assert not_applied(params) == expected


def test_a_run_records_and_says_what_its_policy_ignores(caplog):
    from mosaic.run.app import run
    from tests.helpers import config

    with caplog.at_level("WARNING", logger="mosaic.run.app"):
        s = run(config("workload=synth_small", "workload.n_queries=10", "scheduler=round_robin",
                       "scheduler.max_models_per_worker=1")).summary
    assert s["settings_not_applied"] == ["scheduler.max_models_per_worker"]
    # Not a setting of this run: the runs table must not tell it apart by K.
    assert s["settings"]["K"] is None
    assert "scheduler.max_models_per_worker=1 is not applied: scheduler round_robin does not read it" in caplog.text
    assert run(config("workload=synth_small", "workload.n_queries=10")).summary["settings_not_applied"] == []
