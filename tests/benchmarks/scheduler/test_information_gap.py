"""python -m benchmarks.scheduler.information_gap: engine_aware planned again with more of the true lengths."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.scheduler import information_gap as ig
from benchmarks.scheduler import bench as sb
from mosaic.core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def table():
    # g04 holds a model whose calibration is far off its run; synth_gpqa two models on several workers.
    insts = [sb.instances(("generated",), 0, quick=True)[4], sb.instances(("presets",), 0, quick=True)[2]]
    return sb.to_csv_frame(sb.bench(insts, ["engine_aware", "round_robin"]))


@pytest.fixture(scope="module")
def measured(table):
    return ig.measure(table, 0, quick=True)


@pytest.mark.slow
def test_every_arm_is_simulated_and_none_beats_the_bound(table, measured):
    own = table[table.policy == "engine_aware"].set_index("instance")
    assert list(measured.instance) == list(own.index)
    for r in measured.itertuples():
        assert r.as_run == pytest.approx(own.loc[r.instance].sim_s, rel=1e-3)   # the table's plan, simulated again
        assert r.clairvoyant == pytest.approx(own.loc[r.instance].clair_s, rel=1e-6)
        for arm in ig.ARMS:
            assert getattr(r, arm) >= r.lb_s * (1 - 1e-9)
        assert r.best_known == min(getattr(r, a) for a in ig.KNOWN)
    assert measured.counts_kept.all()   # dealing by true lengths moves requests, not replicas
    # Where a model runs on several workers, which request goes where moves the simulated makespan.
    assert (measured.true_lengths_cost_dealt != measured.as_run).any()


def test_realised_calibration_holds_what_the_requests_realise():
    inst = sb.instances(("generated",), 0, quick=True)[3]
    reqs = list(inst.requests)
    cal = ig.realised_calibration(inst.workload, reqs)
    for m, stats in cal.items():
        got = [inst.workload.outcomes[r.id].output_tokens for r in reqs if r.model == m]
        assert stats.mean_output == pytest.approx(np.mean(got)) and stats.max_output == max(got)
        assert stats.n == inst.workload.calibration[m].n   # only the statistics a plan reads are replaced


@pytest.mark.slow
def test_summary_and_render(measured):
    s = ig.summary(measured)
    every = s[s.family == "all"].set_index("arm")
    assert list(every.index) == list(ig.ARMS)
    ratio = measured.as_run / measured.lb_s
    assert every.loc["as_run", "median"] == pytest.approx(ratio.median())
    assert every.loc["as_run", "within_1.15"] == int((ratio <= 1.15).sum())
    md = ig.render(measured, "cmd")
    assert "`cmd`" in md and f"| all | as run | {len(measured)} | {ratio.median():.3f} |" in md
    assert f"replica counts on {len(measured)} of {len(measured)} instances" in md


@pytest.mark.slow
def test_a_table_of_other_plans_is_refused(table):
    t = table.copy()
    t.loc[t.policy == "engine_aware", "plan_hash"] = "0" * 16
    with pytest.raises(ConfigError, match="plan hash"):
        ig.measure(t, 0, quick=True)
    with pytest.raises(ConfigError, match="no column lb_s"):
        ig.measure(table.drop(columns=["lb_s"]), 0, quick=True)


def test_cli_refuses_a_missing_table(tmp_path):
    out = tmp_path / "gap.md"
    p = subprocess.run([sys.executable, "-m", "benchmarks.scheduler.information_gap", "--table", str(tmp_path / "none.csv"),
                        "--out", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 2 and "no such file" in p.stderr and not out.exists()
