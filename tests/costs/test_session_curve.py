"""Session curves: the engine model run on representative sessions, made monotone and subadditive."""
import numpy as np
import pytest

from mosaic.costs.session_curve import SessionCurve, build_curve, grid, representative
from mosaic.profiles import LengthComponent, LengthDistribution, load_profiles
from sim.backend import run_session

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
def test_curve_is_the_engine_at_grid_points_and_subadditive(model):
    prompts = [200 + (37 * i) % 400 for i in range(300)]
    lengths = PROFILES.model(model).output
    curve = build_curve(engine(model), lengths, prompts, 4, 32768)
    assert curve.n == 300
    for x in (1, 75, 300):
        ps, outs = representative(lengths, prompts, x, 32768, 300)
        assert curve(x) <= engine(model)(ps, outs) + 1e-9      # the guards only ever lower it
    xs = np.arange(1, 301)
    t = np.array([curve(x) for x in xs])
    assert np.all(np.diff(t[curve.xs[0]:]) >= -1e-6 * t.max())   # more requests never finish sooner
    for a, b in ((1, 299), (100, 200), (150, 150), (37, 263)):
        assert curve(a) + curve(b) >= curve(a + b) - 1e-9       # splitting never predicted cheaper


def test_every_shard_carries_the_models_expected_longest_request():
    dist = PROFILES.model("LlamaR1").output
    _, alone = representative(dist, [200], 10, 32768)
    _, shard = representative(dist, [200], 10, 32768, n_total=1000)
    assert max(shard) == int(min(np.rint(dist.quantile(1000 / 1001)), 32768 - 200)) > max(alone)
    assert sorted(shard)[:-1] == sorted(alone)[:-1]


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
