"""Collector, figures and notebook on a tiny real sweep."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mosaic import report

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    sweep, results = tmp / "multirun", tmp / "results"
    subprocess.run([sys.executable, "experiments/run.py", "--config-name", "paper_sweep", "-m",
                    "workload=synth_gpqa", "scheduler=ilp,round_robin",
                    "seed=0,1", "workload.n_queries=40", f"hydra.sweep.dir={sweep}"],
                   cwd=ROOT, check=True, capture_output=True, timeout=600)
    subprocess.run([sys.executable, "experiments/collect.py", "--sweep", str(sweep), "--out", str(results)],
                   cwd=ROOT, check=True, capture_output=True, timeout=300)
    return sweep, results


def summaries(sweep):
    return {(s["scheduler"], s["aggregation"]["name"], s["seed"]): s
            for s in (json.loads(p.read_text()) for p in sweep.rglob("summary.json"))}


def test_sweep_ran_every_combination(tiny_sweep):
    sweep, _ = tiny_sweep
    assert set(summaries(sweep)) == {(s, a, seed) for s in ("ilp", "round_robin")
                                     for a in ("always", "tau1", "tau067") for seed in (0, 1)}


def test_paper_table_matches_the_runs(tiny_sweep):
    sweep, results = tiny_sweep
    runs = summaries(sweep)
    rows = {r["metric"]: r for r in csv.DictReader(open(results / "paper_table.csv"))}
    assert set(rows) == set(report.METRICS)
    assert list(next(csv.reader(open(results / "paper_table.csv")))) == list(report.COLUMNS)
    speedups = [runs[("round_robin", "always", s)]["end_to_end_s"] / runs[("ilp", "tau1", s)]["end_to_end_s"]
                for s in (0, 1)]
    r = rows["e2e_speedup"]
    assert float(r["simulated"]) == pytest.approx(sum(speedups) / 2, rel=1e-3)
    assert r["dataset"] == "gpqa" and float(r["paper"]) == 2.34 and r["n_seeds"] == "2"
    assert float(r["rel_diff"]) == pytest.approx((float(r["simulated"]) - 2.34) / 2.34, abs=1e-3)
    skip = [100 * runs[("ilp", "tau067", s)]["skip_rate"] for s in (0, 1)]
    assert float(rows["skip_tau067"]["simulated"]) == pytest.approx(sum(skip) / 2, rel=1e-3)
    md = (results / "paper_table.md").read_text()
    assert "End-to-end speedup" in md and "2.34x" in md


def test_tau_sweep_reproduces_the_runs(tiny_sweep):
    sweep, results = tiny_sweep
    runs = summaries(sweep)
    taus = {float(r["tau"]): r for r in csv.DictReader(open(results / "figure_data" / "tau_sweep.csv"))}
    # tau = 2/3 and 1 evaluated offline from the always-run must equal the real runs at that tau.
    assert float(taus[1.0]["skip_pct"]) == pytest.approx(100 * runs[("ilp", "tau1", 0)]["skip_rate"])
    assert float(taus[round(20 / 30, 4)]["skip_pct"]) == pytest.approx(100 * runs[("ilp", "tau067", 0)]["skip_rate"])
    run = runs[("ilp", "tau1", 0)]
    assert float(taus[1.0]["acc_delta_pp"]) == pytest.approx(
        100 * (run["accuracy"] - run["accuracy_always_aggregate"]), abs=1e-9)


def test_figures_and_notebook_rebuild_from_results(tiny_sweep, tmp_path):
    _, results = tiny_sweep
    subprocess.run([sys.executable, "experiments/figures.py", "--results", str(results)],
                   cwd=ROOT, check=True, capture_output=True, timeout=300)
    names = {p.name for p in (results / "figures").glob("*.png")}
    assert {"speedups.png", "tau_sweep.png", "output_lengths.png", "idle_fraction.png",
            "timeline_synth_gpqa.png"} <= names
    assert all((results / "figures" / n).stat().st_size > 10_000 for n in names)
    # Execute the notebook's code cells as a script against the tiny results.
    nb = json.loads((ROOT / "notebooks" / "paper_figures.ipynb").read_text())
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    (tmp_path / "results").symlink_to(results)
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "MPLBACKEND": "Agg"})
    assert p.returncode == 0, p.stderr
    assert "End-to-end speedup" in p.stdout


def test_collect_without_runs_is_a_clear_error(tmp_path):
    p = subprocess.run([sys.executable, "experiments/collect.py", "--sweep", str(tmp_path)],
                       cwd=ROOT, capture_output=True, text=True)
    assert p.returncode != 0 and "no summary.json" in p.stderr
