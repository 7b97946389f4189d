"""The simulator speed benchmark measures what it says: requests served, phases timed, memory,
time by component, and a before/after table."""
import json

import pytest

from benchmarks.sim_speed import bench

@pytest.mark.slow
def test_a_case_is_measured_in_its_own_process_and_rendered_against_an_earlier_run():
    rows = bench.run_cases(["flat-smoke", "dense-smoke"], profile=True)
    flat, dense = rows
    assert flat["requests"] > 0 and dense["requests"] > flat["requests"]
    for r in rows:
        assert 0 < r["simulate_s"] <= r["run_s"] and r["requests_per_s"] > 0 and r["peak_rss_mib"] > 50
        assert sum(r["components"].values()) == pytest.approx(1.0)
    assert flat["plan_s"] > 0 and dense["plan_s"] == 0
    assert "mosaic.engine" in dense["components"]
    earlier = {r["case"]: dict(r, simulate_s=2 * r["simulate_s"], requests_per_s=r["requests_per_s"] / 2) for r in rows}
    md = bench.render(rows, earlier, "python -m benchmarks.sim_speed")
    assert md.count("| 2.0x |") == 2 and "Where the time goes" in md
    json.dumps(rows)


def test_component_names_come_from_the_file_path():
    assert bench.component("/x/mosaic/engine/v1.py") == "mosaic.engine"
    assert bench.component("/x/mosaic/backends/sim/graph_pool.py") == "mosaic.backends.sim"
    assert bench.component("/venv/site-packages/simpy/core.py") == "simpy"
