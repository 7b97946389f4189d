"""Arrival processes of online runs: rates, bursts, determinism, and trace files read or refused."""
import numpy as np
import pytest

from mosaic.config.schema import ArrivalsConfig
from mosaic.core.errors import ConfigError
from mosaic.run.builder import build_run, compose
from mosaic.workload.arrivals import arrival_times


def test_poisson_has_its_rate_and_the_seed_decides():
    t = arrival_times(ArrivalsConfig("poisson", "poisson", rate=4.0), 20000, seed=3)
    assert t[0] == 0 and np.all(np.diff(t) >= 0)
    assert len(t) / t[-1] == pytest.approx(4.0, rel=0.03)
    gaps = np.diff(t)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.05)
    assert np.array_equal(t, arrival_times(ArrivalsConfig("poisson", "poisson", rate=4.0), 20000, seed=3))
    assert not np.array_equal(t, arrival_times(ArrivalsConfig("poisson", "poisson", rate=4.0), 20000, seed=4))


def test_gamma_is_burstier_at_the_same_rate():
    t = arrival_times(ArrivalsConfig("gamma", "gamma", rate=2.0, cv=3.0), 50000, seed=0)
    gaps = np.diff(t)
    assert 1 / gaps.mean() == pytest.approx(2.0, rel=0.05)
    assert gaps.std() / gaps.mean() == pytest.approx(3.0, rel=0.1)


def test_batch_has_no_arrivals():
    assert arrival_times(ArrivalsConfig(), 10, 0) is None


def _trace(tmp_path, text, name="t.csv"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_a_trace_of_datetimes_is_read_from_its_first_row_and_rescaled(tmp_path):
    path = _trace(tmp_path, "TIMESTAMP,ContextTokens\n2023-11-16 18:15:46.5,3\n2023-11-16 18:15:47.0,4\n"
                            "2023-11-16 18:15:48.5,5\n2023-11-16 18:15:50.5,1\n")
    t = arrival_times(ArrivalsConfig("trace", "trace", path=path), 3, 0)
    assert t.tolist() == pytest.approx([0.0, 0.5, 2.0])
    # 3 arrivals over 2 s recorded (1 per s): at 4 per second they come 4x closer
    t = arrival_times(ArrivalsConfig("trace", "trace", rate=4.0, path=path), 3, 0)
    assert t.tolist() == pytest.approx([0.0, 0.125, 0.5])
    seconds = _trace(tmp_path, "at\n10\n10.5\n12\n", "s.csv")
    assert arrival_times(ArrivalsConfig("trace", "trace", path=seconds, column="at"), 3, 0).tolist() == [0, 0.5, 2]


@pytest.mark.parametrize("text,needle", [
    ("", "not a readable CSV"),
    ("TIMESTAMP\n", "no rows"),
    ("when\n1\n2\n", "no column 'TIMESTAMP'"),
    ("TIMESTAMP\n1\n3\n2\n", "line 4 arrives before"),
    ("TIMESTAMP\n1\n-2\n", "line 3 has a negative"),
    ("TIMESTAMP\n-1\n2\n", "line 2 has a negative"),
    ("TIMESTAMP\n1\nsoon\n", "line 3 has 'soon'"),
    ("TIMESTAMP\n1\n", "1 arrivals for 3 queries"),
])
def test_a_bad_trace_is_refused_naming_the_file_and_the_fix(tmp_path, text, needle):
    path = _trace(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        arrival_times(ArrivalsConfig("trace", "trace", path=path), 3, 0)
    assert needle in str(e.value) and path in str(e.value)


def test_a_missing_trace_file_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        arrival_times(ArrivalsConfig("trace", "trace", path=str(tmp_path / "none.csv")), 3, 0)


@pytest.mark.parametrize("overrides,needle", [
    (["arrivals=poisson", "arrivals.rate=0"], "arrivals.rate must be a number of queries per second > 0"),
    (["arrivals=poisson", "arrivals.rate=-1"], "arrivals.rate"),
    (["arrivals=poisson", "arrivals.rate=null"], "needs arrivals.rate"),
    (["arrivals=gamma", "arrivals.cv=0"], "arrivals.cv"),
    (["arrivals=poisson", "arrivals.cv=2"], "gamma arrivals only"),
    (["arrivals=trace"], "needs arrivals.path"),
    (["arrivals.rate=2"], "set with arrivals=batch"),
    (["arrivals=poisson", "arrivals.max_in_system=0"], "arrivals.max_in_system"),
    (["arrivals=poisson", "arrivals.engines=hot"], "arrivals.engines"),
    (["arrivals=poisson", "slo.multiple=0.5"], "slo.multiple"),
])
def test_bad_arrival_settings_are_refused_before_the_run(overrides, needle):
    with pytest.raises(ConfigError, match=needle):
        build_run(compose(["workload=synth_small", "workload.n_queries=4", "cluster.n_workers=8", *overrides]))


def test_a_trace_run_checks_its_file_when_built(tmp_path):
    path = _trace(tmp_path, "TIMESTAMP\n1\n2\n")
    with pytest.raises(ConfigError, match="2 arrivals for 4 queries"):
        build_run(compose(["workload=synth_small", "workload.n_queries=4", "cluster.n_workers=8", "arrivals=trace",
                           f"arrivals.path={path}"]))
