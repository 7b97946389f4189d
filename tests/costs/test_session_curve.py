"""Session curves: the engine model run on representative sessions, made monotone and subadditive."""
import numpy as np
import pytest

from mosaic.costs.session_curve import (SessionCurve, build_curve, coarse_grid, draw, grid,
                                        representative)
from mosaic.profiles import LengthComponent, LengthDistribution, load_profiles
from mosaic.engine import run_session

PROFILES = load_profiles("paper_a100")


def engine(model):
    prof = PROFILES.model(model)
    return lambda ps, outs: run_session(prof, PROFILES.engine, 80.0,
                                        [(str(i), int(p), int(o)) for i, (p, o) in enumerate(zip(ps, outs))])


def test_grid_holds_every_even_shard_size():
    g = grid(100, 8)
    assert g[0] == 1 and g[-1] == 100 and g == sorted(set(g))
    for r in range(1, 9):
        assert 100 // r in g and -(-100 // r) in g


def test_representative_sample_is_the_expected_order_statistics():
    dist = PROFILES.model("LlamaR1").output
    ps, outs = representative(dist, [100, 200, 300], 9, 32768)
    assert len(ps) == len(outs) == 9
    assert sorted(outs) == sorted(np.maximum(1, np.rint(dist.ppf(np.arange(1, 10) / 10))).astype(int).tolist())
    # Deterministic, and not sorted by length (a stream mixes short and long).
    assert representative(dist, [100, 200, 300], 9, 32768)[1].tolist() == outs.tolist()
    assert outs.tolist() != sorted(outs.tolist())


@pytest.mark.parametrize("model", ["LlamaR1", "Gemma"])
def test_curve_is_monotone_and_subadditive(model):
    prompts = [200 + (37 * i) % 400 for i in range(300)]
    lengths = PROFILES.model(model).output
    curve = build_curve(engine(model), lengths, prompts, 4, 32768)
    assert curve.n == 300 and len(curve.spread_s) == len(curve.xs)
    assert [x for x, _ in curve.shapes] == coarse_grid(300)
    assert set(coarse_grid(300)) <= set(curve.xs)
    xs = np.arange(1, 301)
    t = np.array([curve(x) for x in xs])
    assert np.all(np.diff(t) >= -1e-6 * t.max())             # more requests never finish sooner
    for a, b in ((1, 299), (100, 200), (150, 150), (37, 263)):
        assert curve(a) + curve(b) >= curve(a + b) - 1e-9       # splitting never predicted cheaper
    # Same problem, same curve.
    assert build_curve(engine(model), lengths, prompts, 4, 32768) == curve


@pytest.mark.parametrize("x", [8, 60])
def test_curve_predicts_the_mean_and_spread_of_random_sessions(x):
    # An independent Monte Carlo (another seed, more draws) of sessions of x of LlamaR1's requests:
    # the heavy-tailed reasoning outputs make two sessions of the same size differ by 2x.
    prompts = [200 + (37 * i) % 400 for i in range(240)]
    lengths = PROFILES.model("LlamaR1").output
    curve = build_curve(engine("LlamaR1"), lengths, prompts, 4, 32768)
    rng = np.random.default_rng(12345)
    walls = np.array([engine("LlamaR1")(*draw(lengths, prompts, x, 32768, rng)) for _ in range(300)])
    assert curve(x) == pytest.approx(walls.mean(), rel=0.08)
    assert curve.sd(x) == pytest.approx(walls.std(), rel=0.25)
    assert curve.sd(x) > 0.15 * curve(x)
    # The standardised draws keep the skew: a small shard is right-skewed (one long request or none).
    shape = np.asarray(curve.shape(x))
    assert abs(shape.mean()) < 1e-9 and np.median(shape) < 0 < shape.max() + shape.min()
    # The shape alone (one session at the expected order statistics) is well below the mean at
    # small x: the expected longest of x heavy-tailed draws lies above their x / (x + 1) quantile.
    if x == 8:
        assert engine("LlamaR1")(*representative(lengths, prompts, x, 32768)) < 0.85 * walls.mean()


def test_spread_and_shape_between_grid_points():
    c = SessionCurve((1, 10, 100), (5.0, 2.0, 1.0), (4.0, 6.0, 10.0), ((1, (-1.0, 1.0)), (64, (-0.5, -0.5, 1.0))))
    assert c.sd(55) == pytest.approx(6 + 4 * 45 / 90) and c.sd(400) == pytest.approx(20.0)
    assert c.shape(5) == (-1.0, 1.0) and c.shape(10) == (-0.5, -0.5, 1.0)   # nearest in log x
    assert c.shape(0) == () and SessionCurve((1, 10), (5.0, 2.0)).sd(5) == 0.0


def test_curve_interpolates_between_grid_points():
    c = SessionCurve((1, 10), (5.0, 2.0))
    assert c(0) == 0 and c(1) == 5.0 and c(10) == 20.0 and c(20) == 40.0
    assert c(5.5) == pytest.approx(5 + 15 * 4.5 / 9)   # T is linear between grid points


def test_a_single_long_request_sets_the_floor():
    # All mass at one length: every request of a session decodes alongside the others, so the
    # session of x takes about as long as one request alone (batching is nearly free) until the
    # batch saturates.
    dist = LengthDistribution((LengthComponent(1.0, 2000.0, 1e-6),), 32768)
    curve = build_curve(engine("Gemma"), dist, [200] * 64, 4, 32768)
    assert curve(16) < 2 * curve(1)


def test_memoised_curve_answers_as_computed_and_compares_by_its_fields():
    c = SessionCurve((1, 10, 100), (5.0, 2.0, 1.0), (4.0, 6.0, 10.0))
    fresh = SessionCurve((1, 10, 100), (5.0, 2.0, 1.0), (4.0, 6.0, 10.0))
    asked = [c(x) for x in (0, 1, 7, 7, 55.5, 100, 250)]
    assert asked == [fresh._at(x) for x in (0, 1, 7, 7, 55.5, 100, 250)]
    assert c == fresh and hash(c) == hash(fresh)      # the memo is not part of the curve
