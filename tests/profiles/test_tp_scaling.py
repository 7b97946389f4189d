"""Tensor-parallel degrees the profile lacks: derived from the measured ones by the Amdahl fit
(TensorParallelProfile.speedup / load_overhead), or refused with a one-line error naming the fix."""
import copy
from pathlib import Path

import pytest
import yaml

from mosaic.core.errors import ConfigError
from mosaic.profiles import load_profiles, loader, parse_profiles
from mosaic.profiles.engine import amdahl_speedup, fit_tp_scaling

BUNDLED = ("paper_a100", "moa6_a100", "tiny_cpu")


@pytest.fixture(scope="module")
def raw_tiny():
    """A whole profile set's raw YAML, whose tensor_parallel section each test replaces."""
    return yaml.safe_load((Path(loader.__file__).parent / "data" / "tiny_cpu.yaml").read_text())


def tp_of(raw_tiny, **section):
    raw = copy.deepcopy(raw_tiny)
    raw["engine"]["tensor_parallel"] = {"source": "hand-made for the test", "load_overhead_s": 5.0, **section}
    return parse_profiles(raw).engine.tp()


@pytest.mark.parametrize("name", BUNDLED)
def test_measured_degrees_are_used_exactly(name):
    tp = load_profiles(name).engine.tp()
    for d, s in tp.step_speedup.items():
        assert tp.speedup(d) == s and not tp.derived(d) and tp.speedup_source(d) == "measured"
        assert tp.load_overhead(d) == tp.load_overhead_s[d]
    assert tp.speedup(1) == 1.0 and tp.load_overhead(1) == 0.0


def test_bundled_measured_numbers_unchanged():
    """The committed results use degree 4 on paper_a100 and degree 2 on tiny_cpu."""
    paper, tiny = (load_profiles(n).engine.tp() for n in ("paper_a100", "tiny_cpu"))
    assert [paper.speedup(d) for d in (2, 4, 8)] == [1.34, 1.8, 2.12]
    assert [paper.load_overhead(d) for d in (2, 4, 8)] == [5.0, 5.0, 5.0]
    assert [tiny.speedup(d) for d in (2, 4)] == [0.766, 0.111]
    # The load's and the first request's shares of what was once one overhead (1.6 and 25.7 s).
    assert [tiny.load_overhead(d) for d in (2, 4)] == [0.0, 18.7]
    assert [tiny.warmup(d) for d in (2, 4)] == [1.6, 7.1]


def test_derived_degree_lies_between_its_neighbours_and_is_monotone():
    tp = load_profiles("paper_a100").engine.tp()
    for d, (lo, hi) in {3: (2, 4), 5: (4, 8), 6: (4, 8), 7: (4, 8)}.items():
        assert tp.derived(d) and tp.speedup_source(d) == "derived (amdahl)"
        assert tp.speedup(lo) < tp.speedup(d) < tp.speedup(hi)
    within = [tp.speedup(d) for d in range(1, 9)]
    assert within == sorted(within)
    # Beyond the largest measured degree: the fitted curve itself (never above it), rising.
    p, c = tp.fit
    beyond = [tp.speedup(d) for d in range(9, 65)]
    assert beyond == sorted(beyond)
    assert all(tp.speedup(d) <= amdahl_speedup(d, p, c) + 1e-12 for d in range(9, 65))
    assert tp.speedup(16) > tp.speedup(8) and tp.speedup(64) <= 1 / (1 - p)


def test_fit_reproduces_an_exact_amdahl_table(raw_tiny):
    exact = {d: amdahl_speedup(d, 0.7) for d in (2, 4, 8)}
    p, c = fit_tp_scaling(exact)
    assert p == pytest.approx(0.7, abs=1e-9) and c == pytest.approx(0.0, abs=1e-9)
    tp = tp_of(raw_tiny, step_speedup=exact)
    assert abs(tp.speedup(16) - 1 / (0.3 + 0.7 / 16)) < 1e-6
    assert abs(tp.speedup(3) - 1 / (0.3 + 0.7 / 3)) < 1e-6
    derived = [tp.speedup(d) for d in range(1, 65)]
    assert derived == sorted(derived)


def test_fit_with_a_communication_term_is_recovered(raw_tiny):
    table = {d: amdahl_speedup(d, 0.9, 0.01) for d in (2, 4, 8)}
    assert fit_tp_scaling(table) == pytest.approx((0.9, 0.01), abs=1e-9)
    tp = tp_of(raw_tiny, step_speedup=table)
    assert tp.speedup(32) == pytest.approx(amdahl_speedup(32, 0.9, 0.01), abs=1e-9)


def test_slower_than_one_gpu_table_continues_its_trend():
    """tiny_cpu: TP makes a step slower (0.766 at 2, 0.111 at 4); Amdahl alone cannot give s < 1,
    the communication term can, and the derived degrees keep falling."""
    tp = load_profiles("tiny_cpu").engine.tp()
    p, c = tp.fit
    assert 0.0 <= p <= 1.0 and c > 0.0
    assert tp.speedup(2) > tp.speedup(3) > tp.speedup(4) > tp.speedup(8) > tp.speedup(16) > tp.speedup(64) > 0
    assert tp.speedup(8) < 1.0 and tp.derived(8)
    # Per-degree load overheads: log2-linear between measured degrees, the last slope beyond.
    lo, hi = tp.load_overhead(2), tp.load_overhead(4)
    assert tp.load_overhead(8) == pytest.approx(hi + (hi - lo))
    assert tp.load_overhead(3) == pytest.approx(lo + (hi - lo) * (1.584962500721156 - 1))


def test_load_overhead_never_falls_below_the_largest_measured(raw_tiny):
    tp = tp_of(raw_tiny, step_speedup={2: 1.5, 4: 2.0}, load_overhead_s={2: 9.0, 4: 6.0})
    assert tp.load_overhead(3) == pytest.approx(9.0 - 3.0 * (1.584962500721156 - 1))
    assert tp.load_overhead(8) == tp.load_overhead(64) == 6.0
    # A single number applies to every degree, derived ones too.
    tp = tp_of(raw_tiny, step_speedup={4: 2.0, 8: 2.5}, load_overhead_s=7.0)
    assert [tp.load_overhead(d) for d in (2, 3, 16)] == [7.0, 7.0, 7.0]


def test_derive_none_refuses_with_one_line_naming_the_fix(raw_tiny):
    tp = tp_of(raw_tiny, step_speedup={2: 1.5, 4: 2.0}, derive="none")
    assert tp.speedup(4) == 2.0
    with pytest.raises(ConfigError) as e:
        tp.speedup(16)
    msg = str(e.value)
    assert "\n" not in msg and "TP degree 16" in msg and "aggregation.placement=scheduled" in msg
    with pytest.raises(ConfigError, match="aggregation.placement=scheduled"):
        tp.load_overhead(16)
    with pytest.raises(ConfigError, match=r"derive.*'amdahl'.*'none'"):
        tp_of(raw_tiny, step_speedup={2: 1.5}, derive="linear")


def test_one_measured_degree_cannot_be_extrapolated(raw_tiny):
    tp = tp_of(raw_tiny, step_speedup={2: 1.5})
    with pytest.raises(ConfigError) as e:
        tp.speedup(4)
    msg = str(e.value)
    assert "\n" not in msg and "two measured degrees" in msg and "aggregation.placement=scheduled" in msg
    assert tp.fit is None


def test_cli_runs_a_cluster_whose_degree_is_derived():
    from mosaic.run.app import run
    from mosaic.run.builder import compose

    s = run(compose(["workload=synth_small", "cluster.n_workers=16"])).summary
    assert s["n_failed_requests"] == 0 and s["aggregator_tp_size"] == 16
    assert s["n_aggregator_requests"] > 0 and s["aggregator_stage_s"] > 0
    assert s["aggregator_tp_scaling"]["source"] == "derived (amdahl)"
    measured = run(compose(["workload=synth_small", "workload.n_queries=20"])).summary["aggregator_tp_scaling"]
    assert measured == {"degree": 4, "speedup": 1.8, "token_speedup": 1.8, "source": "measured",
                        "measured_on": "the engine"}


def test_a_models_own_tp_scaling_replaces_the_engines(raw_tiny):
    """models.<name>.tensor_parallel (profile_tp.py model=<name>): that model's TP engines are costed
    by it, every other model's by the engine's; the same field checks apply."""
    from mosaic.engine import CostModel

    raw = copy.deepcopy(raw_tiny)
    name = next(iter(raw["models"]))
    raw["models"][name]["tensor_parallel"] = {"step_speedup": {2: 1.05}, "token_speedup": {2: 1.4},
                                              "load_overhead_s": 2.4, "source": "measured on it"}
    p = parse_profiles(raw)
    own, other = p.model(name), p.model(next(m for m in raw["models"] if m != name))
    assert own.tp(p.engine, 2).work_speedup(2) == 1.4 and other.tp(p.engine, 2) is p.engine.tp()
    assert own.tp(p.engine, 4) is p.engine.tp()   # one measured degree: 4 is the engine's
    one, two = CostModel(own, p.engine), CostModel(own, p.engine, tp=2)
    assert two.prefill_s(4000, 0.0, 8) < one.prefill_s(4000, 0.0, 8) / 1.3
    raw["models"][name]["tensor_parallel"]["token_speedup"] = {2: 3.0}
    with pytest.raises(ConfigError, match=rf"models\.{name}\.tensor_parallel\.token_speedup"):
        parse_profiles(raw)


def test_a_tp_aggregator_slower_than_one_worker_is_said(caplog):
    """64 CPU workers on cpu2: the derived TP-16 engine steps at 0.02x one worker; the run was
    exit 0 with a 30x slower aggregator stage and no word why."""
    import logging

    from mosaic.run.app import run
    from mosaic.run.builder import compose

    with caplog.at_level(logging.WARNING, logger="mosaic.run.app"):
        s = run(compose(["workload=smoke", "workload.n_queries=4", "cluster=cpu2", "cluster.n_workers=16"])).summary
    assert s["aggregator_tp_scaling"]["speedup"] < 1
    said = [r.getMessage() for r in caplog.records if "TP-16 engine" in r.getMessage()]
    assert len(said) == 1 and "slower than one worker" in said[0] and "aggregation.placement=scheduled" in said[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mosaic.run.app"):
        run(compose(["workload=synth_small", "workload.n_queries=4"]))   # A100 TP=4, measured 2.1x
    assert not [r for r in caplog.records if "slower than one worker" in r.getMessage()]
