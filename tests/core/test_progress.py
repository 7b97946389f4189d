"""Progress bars: on for a terminal or MOSAIC_PROGRESS=1, off otherwise; a run's bars reach their totals."""
import pytest

from mosaic.core import progress


@pytest.mark.parametrize("flag, tty, on", [("1", False, True), ("0", True, False), ("", True, True), ("", False, False)])
def test_enabled_follows_the_terminal_unless_the_environment_says(monkeypatch, flag, tty, on):
    monkeypatch.setenv("MOSAIC_PROGRESS", flag)
    monkeypatch.setattr(progress.sys.stderr, "isatty", lambda: tty, raising=False)
    assert progress.enabled() is on


class Recorder:
    bars = []

    def __init__(self, total, desc, unit="req", **kw):
        self.total, self.desc, self.n = total, desc, 0
        Recorder.bars.append(self)

    def update(self, n):
        self.n += n

    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def test_a_simulated_run_counts_every_request_of_each_stage(monkeypatch):
    import mosaic.backends.sim.backend
    from mosaic.run.app import run
    from tests.helpers import config

    Recorder.bars = []
    monkeypatch.setattr(mosaic.backends.sim.backend, "bar", Recorder)
    s = run(config("workload=synth_small", "workload.n_queries=12")).summary
    expert, aggregator = Recorder.bars
    assert expert.desc.startswith("expert") and expert.n == expert.total == s["n_expert_requests"]
    # The TP aggregator's session is on every worker, counted once.
    assert aggregator.n == aggregator.total == s["n_aggregator_requests"]


def test_the_bar_writes_to_stderr_when_forced(monkeypatch, capsys):
    monkeypatch.setenv("MOSAIC_PROGRESS", "1")
    with progress.bar(3, "demo") as b:
        b.update(3)
    assert "demo" in capsys.readouterr().err
