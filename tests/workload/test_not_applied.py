"""A workload setting the chosen source never reads is recorded as not applied, not silently accepted."""
import pytest

from mosaic.config.schema import WorkloadConfig
from mosaic.workload.sources import not_applied


@pytest.mark.parametrize("w, expected", [
    (WorkloadConfig(), []),
    (WorkloadConfig(dataset="gpqa", questions_dir="/data/q", traces_dir="/data/t", calibration_size=10),
     ["workload.dataset", "workload.questions_dir", "workload.traces_dir", "workload.calibration_size"]),
    (WorkloadConfig(routing_noise=0.5), ["workload.routing_noise"]),
    (WorkloadConfig(routing_noise=0.5, replacement=False), []),
    (WorkloadConfig(routing="paper_table3", replacement=False, routing_noise=0.5),
     ["workload.routing_noise", "workload.replacement"]),
    (WorkloadConfig(kind="questions", dataset="gpqa", preset="gpqa", calibration_size=5),
     ["workload.preset", "workload.calibration_size"]),
    (WorkloadConfig(kind="trace", dataset="medmcqa", questions="q.json", calibration_size=5,
                    aggregator_follow=1.0, coupling="assumed"),
     ["workload.coupling", "workload.aggregator_follow"]),
    (WorkloadConfig(kind="trace", dataset="mmlu_pro", questions="q.json", calibration_questions="t.json",
                    calibration_size=5, calibration_seed=3), ["workload.calibration_size", "workload.calibration_seed"]),
    (WorkloadConfig(kind="trace", dataset="mmlu_pro", questions="q.json", calibration_size=5, calibration_seed=3), []),
    (WorkloadConfig(kind="trace", dataset="mmlu_pro", questions="q.json", calibration_size=5,
                    repeat_sample="resample", replacement=False), ["workload.repeat_sample"]),
])
def test_not_applied_workload_settings(w, expected):
    assert sorted(not_applied(w)) == sorted(expected)


@pytest.mark.slow
def test_bundled_workloads_set_nothing_their_source_ignores():

    from mosaic.run.builder import CONF_DIR, typed
    from tests.helpers import config

    for path in sorted((CONF_DIR / "workload").glob("*.yaml")):
        c = typed(config(f"workload={path.stem}"))
        assert not_applied(c.workload) == [], path.name


def test_a_run_records_and_says_what_its_workload_ignores(caplog):
    from mosaic.run.app import run
    from tests.helpers import config

    with caplog.at_level("WARNING", logger="mosaic.run.app"):
        s = run(config("workload=synth_small", "workload.n_queries=10", "workload.dataset=gpqa",
                       "workload.routing_noise=0.3")).summary
    assert s["settings_not_applied"] == ["workload.routing_noise", "workload.dataset"]
    assert "workload.dataset=gpqa is not applied: workload kind synthetic" in caplog.text


def test_workers_per_host_without_a_contention_measurement_is_not_applied(caplog):
    from mosaic.run.app import run
    from tests.helpers import config

    with caplog.at_level("WARNING", logger="mosaic.run.app"):
        s = run(config("workload=synth_small", "workload.n_queries=10", "cluster.workers_per_host=3")).summary
    assert s["settings_not_applied"] == ["cluster.workers_per_host"]
    assert "cluster.workers_per_host=3 is not applied: the profiles" in caplog.text
