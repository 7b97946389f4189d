"""The estimators behind experiments/fit_difficulty.py (mosaic/fitting/difficulty.py) recover a known coupling."""
import numpy as np
import pytest

from mosaic.core.errors import ConfigError
from mosaic.fitting.difficulty import Draws, distractor_share, fit, fit_discrimination, simulate, triple_stats
from tests.helpers import SHARED_DATA as DATA, needs_shared


def test_triple_stats_by_hand():
    # three models, four questions: unanimous, 2:1, all differ, 2:1 with one unparsed answer
    answers = [["A", "A", "A", None], ["A", "A", "B", "C"], ["A", "B", "C", "C"]]
    lengths = np.array([[1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 4]], float)
    rho, s30, s21, s111, r30, r21, r111 = triple_stats(answers, lengths)
    assert (s30, s21, s111) == (0.25, 0.5, 0.25)
    assert r30 == pytest.approx(1 / 2.5) and r21 == pytest.approx(3 / 2.5) and r111 == pytest.approx(3 / 2.5)
    assert rho < 0


def test_distractor_share_inverts_the_same_wrong_answer_rate():
    # 4 options (3 wrong): p = d^2 + (1 - d^2) / 3; two wrong pairs, one agreeing: p = 0.5 -> d = sqrt(0.25)
    answers = [["B", "B", "A"], ["B", "C", "A"]]
    correct = np.array([[0, 0, 1], [0, 0, 1]])
    d, p, pairs = distractor_share(answers, correct, np.array([4, 4, 4]))
    assert (p, pairs) == (0.5, 2) and d == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="both wrong"):
        distractor_share([["A"], ["A"]], np.array([[1], [1]]), np.array([4]))


def _synthetic(a, d, rho, m=4, q=3000, seed=7):
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, 2, q)
    b = rng.normal(1.0, 0.5, size=(m, 2))
    lengths = np.exp(rng.normal(6, 0.8, size=(m, q)))     # marginals; simulate re-orders them
    n_options = np.full(q, 4)
    answers, out = simulate(a, b, d, rho, 0.0, lengths, groups, Draws.make((m, q), n_options, rng))
    correct = np.array([[x == 0 for x in row] for row in answers], float)
    return correct, answers, out, n_options, groups


@pytest.mark.slow
def test_fit_recovers_the_coupling_it_is_given():
    correct, answers, lengths, n_options, groups = _synthetic(a=2.5, d=0.7, rho=0.6)
    f = fit(correct, answers, lengths, n_options, groups)
    assert f.accuracy == pytest.approx(2.5, rel=0.15)
    assert f.distractor_share == pytest.approx(0.7, abs=0.08)
    assert f.length == pytest.approx(0.6, abs=0.1)
    assert f.link_model[0] == pytest.approx(f.link_traces[0], abs=0.05)   # the fitted link reproduces the data's


def test_discrimination_separates_weak_and_strong_coupling():
    weak = fit_discrimination(_synthetic(a=0.8, d=0.5, rho=0.3)[0], np.zeros(3000, int))[0]
    strong = fit_discrimination(_synthetic(a=3.0, d=0.5, rho=0.3)[0], np.zeros(3000, int))[0]
    assert weak < 1.2 < 2.4 < strong


def test_fit_rejects_mismatched_inputs():
    with pytest.raises(ConfigError, match="models >= 2"):
        fit(np.zeros((1, 5)), [[None] * 5], np.ones((1, 5)), np.full(5, 4), np.zeros(5))


@pytest.mark.slow
@needs_shared
def test_committed_medmcqa_coupling_is_what_the_fit_script_measures():
    from mosaic.fitting.difficulty import MED, SOURCES, matrices
    from mosaic.profiles import load_profiles

    files, fmt, by_cat = SOURCES[MED]
    correct, lengths, groups, answers, n_options = matrices(DATA, files, fmt, by_cat)
    f = fit(correct, answers, lengths, n_options, groups)
    committed = load_profiles("paper_a100").datasets["medmcqa"]
    assert (committed.accuracy, committed.length, committed.distractor_share) == pytest.approx(
        (f.accuracy, f.length, f.distractor_share), abs=1e-3)
