"""The runtime benchmark: every plan under static and pull (routers on the data-parallel plan),
never below the scheduler benchmark's bound, pull never slower than the same plan under static by
more than 1% on the quick instances, and its table and dispatch timing written."""
import pandas as pd
import pytest

from benchmarks.scheduler import bench as sb
from benchmarks.scheduler import runtimes as rb

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    sb.write(out, ["generated"], ["engine_aware", "data_parallel"], quick=True, progress=None)
    return out


def test_every_plan_runs_under_every_runtime_and_pull_loses_nothing(table):
    df = rb.bench(sb.generated_instances(0, quick=True), rb.read_bounds(table / "scheduler_bench.csv"),
                  ["engine_aware", "data_parallel"], progress=None)
    ok = df[df.status == "ok"]
    pairs = set(zip(ok.policy, ok.runtime))
    assert {("engine_aware", "static"), ("engine_aware", "pull"), ("data_parallel", "least_outstanding"),
            ("data_parallel", "p2c")} <= pairs
    assert (ok.sim_s >= ok.lb_s * (1 - 1e-6)).all()   # the table's bounds have 4 decimals
    worse = rb.worse_than_static(df) & (ok.runtime == "pull")   # the routers are baselines: they may lose
    assert not worse.any(), ok[worse][["instance", "policy", "runtime"]]
    # a plan that leaves work unbalanced (data-parallel: every model everywhere) gains from pull
    dp = ok[ok.policy == "data_parallel"].pivot(index="instance", columns="runtime", values="sim_s")
    assert (dp["pull"] < dp["static"]).sum() >= len(dp) // 2
    assert ok[ok.policy == "engine_aware"].respects_k.all()


def test_the_entry_point_writes_its_table(table, tmp_path):
    rb.main(["--quick", "--families", "generated", "--policies", "engine_aware", "--table",
             str(table / "scheduler_bench.csv"), "--out", str(tmp_path), "--no-dispatch"])
    md = (tmp_path / "runtime_bench.md").read_text()
    assert "| engine_aware | pull |" in md and "| engine_aware | static |" in md
    assert len(pd.read_csv(tmp_path / "runtime_bench.csv")) == 2 * len(sb.QUICK_SHAPES)


def test_decisions_are_timed_one_by_one():
    d = rb.dispatch_overhead(8, 6)
    assert d["decisions"] >= d["requests"] and 0 < d["median_ms"] <= d["p99_ms"] <= d["max_ms"]
