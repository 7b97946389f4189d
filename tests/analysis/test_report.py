"""Collector, figures and notebook on a tiny real sweep, plus the report's rules on hand-made runs."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mosaic.analysis import paper_table as report
from mosaic.analysis.collect import collect
from mosaic.analysis.figures import write_figures
from mosaic.config.schema import AggregationConfig, MosaicConfig, SchedulerConfig, WorkloadConfig
from mosaic.run.metrics import run_settings

ROOT = Path(__file__).resolve().parents[2]
TINY = ["workload=synth_gpqa", "seed=0,1", "workload.n_queries=40"]


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    sweep, results = tmp / "multirun", tmp / "results"
    for config, extra in (("paper_sweep", ["scheduler=ilp,round_robin"]),
                          ("paper_sweep_k", ["scheduler.max_models_per_worker=3"]),
                          ("paper_sweep_policies", ["scheduler=data_parallel", "seed=0"])):
        # A setting given twice is refused: the policies sweep's seed replaces TINY's.
        base = [o for o in TINY if o.split("=")[0] not in {e.split("=")[0] for e in extra}]
        subprocess.run([sys.executable, "experiments/run.py", "--config-name", config, "-m", *base, *extra,
                        f"hydra.sweep.dir={sweep / config}", "hydra/job_logging=disabled"],
                       cwd=ROOT, check=True, capture_output=True, timeout=600)
    collect(sweep, results)
    return sweep, results


def summaries(sweep, config="paper_sweep"):
    return {(s["scheduler"], s["aggregation"]["name"], s["seed"]): s
            for s in (json.loads(p.read_text()) for p in (sweep / config).rglob("summary.json"))}


def table(results):
    return {(r["variant"], r["metric"]): r for r in csv.DictReader(open(results / "paper_table.csv"))}


@pytest.mark.slow
def test_sweep_ran_every_combination(tiny_sweep):
    sweep, _ = tiny_sweep
    runs = summaries(sweep)
    assert set(runs) == {(s, a, seed) for s in ("ilp", "round_robin")
                         for a in ("always", "tau1", "tau067") for seed in (0, 1)}
    # The paper's setting is what every main run records.
    # (round robin never reads K: its runs record it as not applied, None.)
    assert all(r["settings"] == {**report.PAPER_SETTINGS, **({"K": None} if key[0] == "round_robin" else {})}
               for key, r in runs.items())
    assert {r["settings"]["K"] for r in summaries(sweep, "paper_sweep_k").values()} == {3}


@pytest.mark.slow
def test_paper_table_matches_the_runs(tiny_sweep):
    sweep, results = tiny_sweep
    runs = summaries(sweep)
    rows = table(results)
    assert {m for v, m in rows if v == "main"} == set(report.METRICS)
    assert list(next(csv.reader(open(results / "paper_table.csv")))) == list(report.COLUMNS)
    # Headline: RR always-aggregate vs ILP at tau = 2/3, per seed, then the mean.
    e2e = [runs[("round_robin", "always", s)]["end_to_end_s"] / runs[("ilp", "tau067", s)]["end_to_end_s"]
           for s in (0, 1)]
    r = rows[("main", "e2e_speedup_tau067")]
    assert float(r["simulated"]) == pytest.approx(sum(e2e) / 2, rel=1e-3)
    assert r["dataset"] == "gpqa" and float(r["paper"]) == 2.34 and r["n_seeds"] == "2"
    assert float(r["rel_diff"]) == pytest.approx((float(r["simulated"]) - 2.34) / 2.34, abs=1e-3)
    assert r["within_15pct"] == ("yes" if abs(float(r["rel_diff"])) <= 0.15 else "no")
    agg1 = [runs[("round_robin", "always", s)]["aggregator_stage_s"] / runs[("ilp", "tau1", s)]["aggregator_stage_s"]
            for s in (0, 1)]
    assert float(rows[("main", "aggregator_speedup_tau1")]["simulated"]) == pytest.approx(sum(agg1) / 2, rel=1e-3)
    assert rows[("main", "aggregator_speedup_tau1")]["paper"] == ""          # the paper gives none
    assert rows[("main", "aggregator_speedup_tau1")]["within_15pct"] == ""
    skip = [100 * runs[("ilp", "tau067", s)]["skip_rate"] for s in (0, 1)]
    assert float(rows[("main", "skip_tau067")]["simulated"]) == pytest.approx(sum(skip) / 2, rel=1e-3)
    md = (results / "paper_table.md").read_text()
    assert "End-to-end speedup, tau=2/3" in md and "2.34x" in md and "Variant: K=3" in md


@pytest.mark.slow
def test_a_K_variant_is_measured_against_the_main_baseline(tiny_sweep):
    sweep, results = tiny_sweep
    main, k3 = summaries(sweep), summaries(sweep, "paper_sweep_k")
    expert = [main[("round_robin", "always", s)]["expert_stage_s"] / k3[("ilp", "tau067", s)]["expert_stage_s"]
              for s in (0, 1)]
    assert float(table(results)[("K=3", "expert_speedup")]["simulated"]) == pytest.approx(sum(expert) / 2, rel=1e-3)


@pytest.mark.slow
def test_artefact_tables(tiny_sweep):
    sweep, results = tiny_sweep
    runs = summaries(sweep)
    data = results / "figure_data"
    walls = {int(r["seed"]): float(r["expert_stage_s"]) for r in csv.DictReader(open(data / "table4_seed_walls.csv"))}
    assert walls == pytest.approx({s: runs[("ilp", "tau1", s)]["expert_stage_s"] for s in (0, 1)})
    decomp = {r["arm"]: r for r in csv.DictReader(open(data / "fig6_decomposition.csv"))}
    assert float(decomp["mosaic"]["aggregator_s"]) == pytest.approx(
        sum(runs[("ilp", "tau067", s)]["aggregator_stage_s"] for s in (0, 1)) / 2)
    buckets = list(csv.DictReader(open(data / "fig7_buckets.csv")))
    assert sum(int(b["n"]) for b in buckets) == 40
    breakdown = list(csv.DictReader(open(data / "fig3a_breakdown.csv")))
    assert {b["scheduler"] for b in breakdown} == {"round_robin", "data_parallel"}
    for b in breakdown:   # every GPU's stage wall is split exactly
        assert float(b["load_s"]) + float(b["generate_s"]) + float(b["idle_s"]) == pytest.approx(
            float(b["stage_wall_s"]), rel=1e-6)
    diag = {r["arm"]: r for r in csv.DictReader(open(data / "diagnostics.csv"))}
    assert int(diag["baseline"]["aggregator_requests"]) == runs[("round_robin", "always", 0)]["n_aggregator_requests"]
    assert int(diag["mosaic"]["aggregator_requests"]) == runs[("ilp", "tau067", 0)]["n_aggregator_requests"]
    assert float(diag["baseline"]["slowest_gpu_busy_s"]) <= runs[("round_robin", "always", 0)]["expert_stage_s"] + 1e-6
    md = (results / "paper_artefacts.md").read_text()
    assert "Fig. 6" in md and "Diagnostics" in md


@pytest.mark.slow
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


@pytest.mark.slow
def test_figures_and_notebook_rebuild_from_results(tiny_sweep, tmp_path):
    _, results = tiny_sweep
    write_figures(results)
    names = {p.name for p in (results / "figures").glob("*.png")}
    # Table 3 compares only the paper's own question sets, so a synthetic sweep has none.
    assert {"speedups.png", "tau_sweep.png", "output_lengths.png", "idle_fraction.png", "timeline_synth_gpqa.png",
            "fig3a_breakdown.png", "fig6_decomposition.png", "fig7_buckets_synth_gpqa.png",
            "table4_seed_walls.png"} <= names
    assert all((results / "figures" / n).stat().st_size > 10_000 for n in names)
    # Vector copies for a paper, the same bytes when regenerated (no creation date inside).
    first = {p.name: p.read_bytes() for p in write_figures(results, ["pdf", "svg"])}
    assert first["speedups.pdf"].startswith(b"%PDF") and b"<svg" in first["speedups.svg"][:500]
    assert {p.name: p.read_bytes() for p in write_figures(results, ["pdf", "svg"])} == first
    with pytest.raises(ValueError, match="choose among png, pdf, svg"):
        write_figures(results, ["jpg"])
    # Execute the notebook as a user's Jupyter would (nbclient, a real kernel) against the tiny
    # results, and count the figures it renders: one per figure call of its cells.
    nbclient, nbformat = pytest.importorskip("nbclient"), pytest.importorskip("nbformat")
    pytest.importorskip("ipykernel")
    nb = nbformat.read(ROOT / "notebooks" / "paper_figures.ipynb", as_version=4)
    (tmp_path / "results").symlink_to(results)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    pngs = sum("image/png" in o.get("data", {}) for o in outputs)
    expected = len(list((results / "figures").glob("*.png")))
    assert pngs >= expected - 1, (pngs, expected)      # the figure files minus Table 3 (no paper set here)
    assert any("End-to-end speedup" in o.get("text", "") for o in outputs)


def test_collect_without_runs_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no summary.json"):
        collect(tmp_path, tmp_path / "results")
    # The command line turns it into one line and a failure status.
    p = subprocess.run([sys.executable, "experiments/collect.py", "--sweep", str(tmp_path)],
                       cwd=ROOT, capture_output=True, text=True)
    assert p.returncode != 0 and "no summary.json" in p.stderr


# ------------------------------------------------------------------ rules on hand-made runs

def run(scheduler, agg="always", seed=0, **settings):
    return {"scheduler": scheduler, "workload": "mmlu_pro", "seed": seed, "aggregation": {"name": agg},
            "settings": {**report.PAPER_SETTINGS, **settings}}


def test_variant_counts_only_the_settings_a_policy_reads():
    assert report.variant_of(run("ilp")) == ()
    assert report.variant_of(run("round_robin", K=None)) == ()            # RR does not read K
    assert report.variant_of(run("ilp", K=None)) == (("K", None),)
    assert report.variant_of(run("ilp", rr_order="pool")) == ()           # the ILP does not read the RR order
    assert report.variant_of(run("round_robin", rr_order="pool")) == (("rr_order", "pool"),)
    assert report.variant_of(run("ilp", routing="paper_table3")) == (("routing", "paper_table3"),)
    assert report.variant_of(run("round_robin", shard_cost="affine")) == ()   # RR's plan ignores costs
    assert report.variant_of(run("ilp", routing="paper_table3", shard_cost="affine")) == (
        ("routing", "paper_table3"), ("shard_cost", "affine"))
    assert report.variant_of({"scheduler": "ilp"}) == ()                   # written before settings existed
    assert report.variant_label((("K", None), ("replacement", False))) == "K=none, replacement=false"


def test_run_settings_defaults_and_overrides():
    # The schema's defaults are the paper's settings, except K, which the paper's runs set to 2.
    assert run_settings(MosaicConfig()) == {**report.PAPER_SETTINGS, "K": None}
    s = run_settings(MosaicConfig(
        scheduler=SchedulerConfig(max_models_per_worker=3, rr_order="pool", shard_cost="affine"),
        workload=WorkloadConfig(routing="paper_table3", replacement=False, coupling="assumed"),
        aggregation=AggregationConfig(placement="scheduled")))
    assert s == {"K": 3, "rr_order": "pool", "routing": "paper_table3", "replacement": False, "placement": "scheduled",
                 "coupling": "assumed", "shard_cost": "affine"}


@pytest.mark.parametrize("metric,sim,paper,within", [
    ("e2e_speedup_tau067", 1.71 * 1.149, 1.71, "yes"), ("e2e_speedup_tau067", 1.71 * 1.151, 1.71, "no"),
    ("skip_tau067", 84.62 * 0.86, 84.62, "yes"), ("skip_tau1", 45.71 * 0.84, 45.71, "no"),
    ("acc_delta_tau067", -0.62 + 0.99, -0.62, "yes"), ("acc_delta_tau1", 0.24 - 1.01, 0.24, "no"),
    ("e2e_speedup_tau1", 2.0, None, "")])
def test_verdict_rules(metric, sim, paper, within):
    assert report.verdict(metric, sim, paper)[0] == within


def test_agreement_buckets_by_hand(tmp_path):
    rows = [("q1", 1.0, 300), ("q2", 1.0, 600), ("q3", 0.666667, 3000), ("q4", 0.333333, 9000)]
    with open(tmp_path / "queries.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["query_id", "agreement", "expert_output_tokens"])
        w.writerows(rows)
    buckets, ecdf = report.agreement_buckets({"_dir": str(tmp_path), "workload": "mmlu_pro", "seed": 0})
    by = {b["bucket"]: b for b in buckets}
    assert list(by) == ["3:0", "2:1", "1:1:1"]
    assert (by["3:0"]["n"], by["3:0"]["share_pct"], by["3:0"]["mean_tokens"]) == (2, 50.0, 150.0)  # (300+600)/2/3
    assert by["1:1:1"]["mean_tokens"] == 3000.0 and by["1:1:1"]["mean_tokens_sum"] == 9000.0
    assert by["2:1"]["paper_n"] == 817 and by["3:0"]["paper_mean_tokens"] == 1024
    assert by["3:0"]["spearman_rho"] == pytest.approx(-0.9486833, abs=1e-6)   # longer answers, less agreement
    assert {e["bucket"] for e in ecdf} == set(by) and len(ecdf) == 3 * 101


def test_stage_breakdown_by_hand(tmp_path):
    (tmp_path / "sessions.csv").write_text(
        "stage,worker,index,model,load_start_s,load_end_s,run_start_s,run_end_s\n"
        "expert,0,0,A,0,40,40,100\nexpert,0,1,B,105,145,145,200\nexpert,1,0,C,0,30,30,80\n"
        "aggregator,0,0,A,0,40,40,500\n")
    r = {"_dir": str(tmp_path), "workload": "mmlu_pro", "scheduler": "round_robin", "seed": 0,
         "expert_stage_s": 200.0, "workers": [{"id": 0}, {"id": 1}, {"id": 2}]}
    rows = {b["worker"]: b for b in report.stage_breakdown(r)}
    assert (rows[0]["load_s"], rows[0]["generate_s"], rows[0]["idle_s"], rows[0]["models"]) == (80, 115, 5, "A+B")
    assert (rows[1]["load_s"], rows[1]["generate_s"], rows[1]["idle_s"]) == (30, 50, 120)
    assert (rows[2]["load_s"], rows[2]["generate_s"], rows[2]["idle_s"]) == (0, 0, 200)   # an unused GPU idles
