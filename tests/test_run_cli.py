"""The main command as a user runs it."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KEYS = {"scheduler", "backend", "workload", "seed", "n_queries", "n_expert_requests", "expert_stage_s",
        "aggregator_stage_s", "end_to_end_s", "skip_rate", "accuracy", "accuracy_always_aggregate",
        "workers", "solver"}


def cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, str(ROOT / "experiments" / "run.py"), *args],
                          capture_output=True, text=True, cwd=cwd, timeout=300)


def test_writes_summary_plan_and_trace(tmp_path):
    p = cli("workload=synth_small", f"hydra.run.dir={tmp_path}")
    assert p.returncode == 0, p.stderr
    assert "end to end" in p.stdout
    s = json.loads((tmp_path / "summary.json").read_text())
    assert KEYS <= set(s)
    assert s["scheduler"] == "ilp" and s["backend"] == "sim" and s["workload"] == "synth_small"
    assert s["end_to_end_s"] == pytest.approx(s["expert_stage_s"] + s["aggregator_stage_s"])
    assert set(s["solver"]) == {"status", "solve_s", "objective", "bound", "gap"}
    for w in s["workers"]:
        assert set(w) == {"id", "busy_s", "idle_s", "sessions"}
        assert w["busy_s"] + w["idle_s"] == pytest.approx(s["end_to_end_s"])
    plan = json.loads((tmp_path / "plan.json").read_text())
    ids = [r for w in plan["expert"]["workers"] for sess in w["sessions"] for r in sess["request_ids"]]
    assert len(ids) == len(set(ids)) == s["n_expert_requests"]
    rows = list(csv.DictReader(open(tmp_path / "trace.csv")))
    assert len(rows) == s["n_expert_requests"] + s["n_aggregator_requests"]
    assert all(float(r["start_s"]) <= float(r["first_token_s"]) <= float(r["finish_s"]) for r in rows)


def test_baseline_has_no_solver(tmp_path):
    p = cli("workload=synth_small", "scheduler=fifo", f"hydra.run.dir={tmp_path}")
    assert p.returncode == 0, p.stderr
    assert json.loads((tmp_path / "summary.json").read_text())["solver"] is None


@pytest.mark.parametrize("args, message", [
    (["scheduler.name=nope"], "unknown scheduler 'nope'; choose one of"),
    (["cluster.n_workers=0"], "cluster.n_workers must be an integer >= 1"),
    (["cluster.memory_gib=20"], "raise cluster.memory_gib"),
])
def test_bad_config_exits_2_with_one_line(tmp_path, args, message):
    p = cli("workload=synth_small", *args, f"hydra.run.dir={tmp_path}")
    assert p.returncode == 2
    assert message in p.stderr
    assert "Traceback" not in p.stderr


def test_unknown_scheduler_group_option_lists_choices(tmp_path):
    p = cli("scheduler=nope", f"hydra.run.dir={tmp_path}")
    assert p.returncode != 0
    assert "scheduler" in p.stderr and "round_robin" in p.stderr
    assert "Traceback" not in p.stderr


def test_runs_without_shared_data_from_another_directory(tmp_path):
    # The embedded default needs nothing outside the package: run from an empty directory.
    p = cli("workload=synth_small", f"hydra.run.dir={tmp_path / 'out'}", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
