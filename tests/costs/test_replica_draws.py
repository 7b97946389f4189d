"""A plan's predicted makespan: the busiest worker over seeded scenarios of each replica's time."""
import numpy as np
import pytest

from mosaic.costs.problem import SCENARIOS, ModelDemand, makespan_draws, predict_makespan
from mosaic.costs.session_curve import SessionCurve

# 16 standardised sampled sessions of a right-skewed replica time (mean 0, sd 1).
RAW = np.array([-0.9] * 8 + [-0.4] * 4 + [0.5, 1.0, 2.0, 3.2])
SHAPE = tuple(float(v) for v in np.sort((RAW - RAW.mean()) / RAW.std(ddof=1)))


def demand(n=640, load=10.0, per_request=1.0, cv=0.2):
    xs = (1, 10, n)
    curve = SessionCurve(xs, (per_request,) * 3, tuple(cv * x * per_request for x in xs), ((10, SHAPE),))
    return ModelDemand("R", tuple(f"q{i}" for i in range(n)), load, curve(n), 0, curve=curve)


def test_a_replicas_draws_keep_the_sampled_mean_and_spread_and_are_seeded():
    d = demand()
    draws = d.replica_draws(10, SCENARIOS, 3)
    assert draws.mean() == pytest.approx(d.replica_s(10), rel=1e-9)     # the kernel's noise is centred
    assert draws.std(ddof=1) == pytest.approx(d.replica_sd(10), rel=0.1)
    assert np.array_equal(draws, d.replica_draws(10, SCENARIOS, 3))
    assert not np.array_equal(draws, d.replica_draws(10, SCENARIOS, 4))


def test_the_busiest_of_many_replicas_is_not_capped_at_the_largest_sampled_session():
    # 64 replicas of 10 requests: resampling the 16 sessions alone, nearly every scenario's busiest
    # replica is the largest of them, so the band collapses onto one value.
    d = demand()
    workers = [[(d, 10)] for _ in range(64)]
    busiest = makespan_draws(workers)
    cap = d.replica_s(10) + d.replica_sd(10) * max(SHAPE)
    low, high = np.quantile(busiest, [0.1, 0.9])
    assert high > cap * 1.02
    assert high - low > 0.1 * d.replica_sd(10) * (max(SHAPE) - min(SHAPE))
    # Still the expected largest: above the largest mean, and one replica's draws on their own.
    assert predict_makespan(workers)[2] > d.replica_s(10)
    assert predict_makespan([[(d, 10)]])[2] == pytest.approx(d.replica_s(10), rel=1e-9)


def test_a_point_prediction_has_no_draws():
    d = ModelDemand("I", ("a", "b"), 5.0, 8.0, 0)
    assert d.replica_draws(2, SCENARIOS, 0) is None
    assert makespan_draws([[(d, 2)]]) is None
    assert predict_makespan([[(d, 2)]])[2] is None
