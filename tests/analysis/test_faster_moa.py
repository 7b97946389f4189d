"""The Faster-MoA comparison: every setting, concurrency and placement runs, and the reductions are
against all-to-all of the same concurrency and placement."""
import csv

import pytest

from mosaic.analysis import faster_moa


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
