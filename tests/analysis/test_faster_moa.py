"""The Faster-MoA comparison: every setting, concurrency and placement runs, and the reductions are
against all-to-all of the same concurrency and placement."""
import csv
from pathlib import Path

import pytest

from mosaic.analysis import faster_moa


@pytest.mark.slow
def test_settings_run_and_compare_against_all_to_all(tmp_path):
    table = faster_moa.write(tmp_path, n_queries=3, seed=0)
    rows = list(csv.DictReader(open(tmp_path / "faster_moa.csv")))
    assert len(rows) == len(faster_moa.SETTINGS) * len(faster_moa.CONCURRENCY) * len(faster_moa.PLACEMENTS)
    for r in rows:
        base = next(b for b in rows if b["setting"] == "all-to-all" and b["concurrency"] == r["concurrency"]
                    and b["placement"] == r["placement"])
        assert float(r["p50_vs_a2a_pct"]) == pytest.approx(
            100 * (float(r["latency_p50_s"]) / float(base["latency_p50_s"]) - 1))
        assert (float(r["prefix_cache_hit_rate"] or 0) > 0) == ("overlap" in r["setting"])
        assert int(r["served"]) + int(r["cancelled"]) == 3 * (19 if r["setting"] == "all-to-all" else 13)
    assert "-62%" in table and "-90%" in table
    assert (tmp_path / "figures" / "faster_moa_latency.png").stat().st_size > 0


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["--queries", "0"], "--queries must be a number of queries in [1, 100000] (got 0)"),   # named workload.n_queries
    (["--seed", "-1"], "--seed must be >= 0 (got -1)"),
])
def test_bad_arguments_name_the_option_typed(tmp_path, args, message):
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[2] / "experiments" / "faster_moa.py"
    r = subprocess.run([sys.executable, str(script), *args, "--out", str(tmp_path)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr
    assert not any(tmp_path.iterdir())
