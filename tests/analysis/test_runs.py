"""load_runs: any sweep as a DataFrame, a row per finished run and a column per override."""
import json

import pytest

from mosaic.analysis import load_runs
from mosaic.run.builder import compose
from mosaic.run.cli import run_job


def job(directory, *overrides):
    return run_job(compose(list(overrides)), directory, list(overrides))


def test_a_sweep_is_one_row_per_finished_run_with_its_overrides(tmp_path):
    assert job(tmp_path / "a", "workload=synth_small", "cluster.n_workers=2") == 0
    assert job(tmp_path / "b", "workload=synth_small", "cluster.n_workers=3", "scheduler=round_robin") == 0
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "error.json").write_text(json.dumps({"exit_code": 2, "stage": "config", "error": "bad"}))
    df = load_runs(tmp_path).sort_values("run_dir").reset_index(drop=True)
    assert list(df["cluster.n_workers"]) == [2, 3]          # parsed, not strings
    assert list(df["scheduler"]) == ["engine_aware", "round_robin"]   # the override, or the summary's
    for i, d in enumerate(("a", "b")):
        s = json.loads((tmp_path / d / "summary.json").read_text())
        assert df.loc[i, "end_to_end_s"] == pytest.approx(s["end_to_end_s"])
        assert df.loc[i, "serving.expert.latency_s.p90"] == pytest.approx(s["serving"]["expert"]["latency_s"]["p90"])
        assert df.loc[i, "wall_s"] == pytest.approx(s["provenance"]["wall_s"])
    assert [d.endswith("c") for d, _ in df.attrs["skipped"]] == [True]
