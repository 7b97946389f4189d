"""compare_policies' files: the CSV is what a rerun reproduces exactly (no wall-clock columns)."""
import pytest
import csv

from mosaic.analysis import policies


@pytest.mark.slow
def test_policies_csv_holds_no_wall_clock_and_the_markdown_keeps_the_solve_time(tmp_path):
    md = policies.write(tmp_path, seeds=[0], command="python experiments/compare_policies.py --seeds 0")
    with open(tmp_path / "policies.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows and not set(policies.WALL_CLOCK) & set(rows[0])
    assert {r["scheduler"] for r in rows} == set(policies.POLICIES)
    assert "Regenerate with `python experiments/compare_policies.py --seeds 0`" in md
    assert "solve time (s, max)" in md
