import pytest

from mosaic.config.schema import AggregationConfig
from mosaic.run.aggregation import agreement, decide
from mosaic.core.errors import ConfigError

TAU1 = AggregationConfig(policy="threshold", tau=1.0)
TAU067 = AggregationConfig(policy="threshold", tau=0.6667)
ALWAYS = AggregationConfig(policy="always", tau=None)


@pytest.mark.parametrize("answers, c, majority, skip1, skip067", [
    (["A", "A", "A"], 1.0, "A", True, True),        # 3:0
    (["A", "B", "A"], 2 / 3, "A", False, True),     # 2:1
    (["A", "B", "C"], 1 / 3, None, False, False),   # 1:1:1
])
def test_agreement_cases(answers, c, majority, skip1, skip067):
    assert agreement(answers) == (pytest.approx(c), majority)
    assert decide(TAU1, {"q": answers})[0].skip is skip1
    assert decide(TAU067, {"q": answers})[0].skip is skip067
    assert decide(ALWAYS, {"q": answers})[0].skip is False


def test_skipped_query_returns_majority():
    d = decide(TAU067, {"q": ["C", "B", "C"]})[0]
    assert d.skip and d.majority == "C"


def test_unparsed_answers_are_not_votes():
    assert agreement(["A", None, None]) == (pytest.approx(1 / 3), "A")
    assert agreement([None, None, None]) == (0.0, None)


def test_tie_at_top_never_skips():
    d = decide(AggregationConfig(policy="threshold", tau=0.5), {"q": ["A", "A", "B", "B"]})[0]
    assert d.majority is None and not d.skip


@pytest.mark.parametrize("name, tau", [("threshold", 0.0), ("threshold", 1.5), ("threshold", None), ("vote", 1.0)])
def test_bad_policy(name, tau):
    with pytest.raises(ConfigError, match="aggregation"):
        AggregationConfig(policy=name, tau=tau)
