"""The online benchmark finds its reference capacity, runs every policy around it and tables what it
measured."""
import pytest

from benchmarks.online import bench


@pytest.mark.slow
def test_a_workload_is_searched_run_and_rendered(monkeypatch):
    # a small, KV-starved cluster so that a few dozen queries saturate it
    monkeypatch.setitem(bench.WORKLOADS, "tiny", (["workload=synth_small", "workload.n_queries=40",
                                                   "cluster.n_workers=6", "arrivals=poisson", "slo.multiple=1.5",
                                                   "engine.num_gpu_blocks=2100"], "a tiny case"))
    monkeypatch.setattr(bench, "POLICIES", ("least_outstanding", "pull"))
    monkeypatch.setattr(bench, "FACTORS", (0.5, 2.0))
    res = bench.run_workload("tiny", [0], 0.99, lambda m: None)
    assert res["capacity_qps"] is not None and not res["unsaturated"]
    assert len(res["rows"]) == 4 and {r["policy"] for r in res["rows"]} == {"least_outstanding", "pull"}
    lo = {r["factor"]: r for r in res["rows"] if r["policy"] == "least_outstanding"}
    assert lo[0.5]["slo_attainment"] >= 0.99   # at half the rate it was found to sustain
    table = {s["policy"]: s for s in bench.summarise(res, 0.99)}
    for policy, s in table.items():   # the grid's highest factor met, every lower one met too
        att = {f: r["slo_attainment"] for f, r in ((r["factor"], r) for r in res["rows"] if r["policy"] == policy)}
        expect = 0.0 if att[0.5] < 0.99 else (2.0 if att[2.0] >= 0.99 else 0.5)
        assert s["sustained_factor"] == expect and s["attainment_x2"] == att[2.0]
    md = bench.render([res], [0], 0.99, "python -m benchmarks.online")
    assert "Reference capacity (least_outstanding)" in md and "| pull |" in md
