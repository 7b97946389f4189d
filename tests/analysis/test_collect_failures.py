"""The collector reads finished runs only: a run directory with error.json (a failed run, even
beside its kept summary.json) or a job directory without summary.json is skipped and counted."""
import csv
import json

import pytest

from mosaic.analysis.collect import collect
from mosaic.analysis.runs import finished_runs
from mosaic.run.builder import compose
from mosaic.cli.job import run_job
from mosaic.core.rundir import record_failure

TINY = ["workload=synth_gpqa", "workload.n_queries=40", "seed=0"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("collect") / "multirun"
    for scheduler in ("ilp", "round_robin"):
        for agg in ("always", "tau067"):
            ov = [*TINY, f"scheduler={scheduler}", f"aggregation={agg}"]
            assert run_job(compose(ov), root / f"{scheduler}_{agg}", ov) == 0
    # A run that finished but failed (every request failed): its summary is kept beside error.json.
    failed = root / "failed_all"
    failed.mkdir()
    (failed / "summary.json").write_text((root / "ilp_always" / "summary.json").read_text())
    record_failure(failed, ["seed=9"], "all 120 requests failed; first error: boom", 1, "run")
    # A run that failed before writing anything, and one killed before it finished (no record).
    record_failure(root / "failed_config", ["seed=-1"], "seed must be >= 0", 2, "config")
    (root / "killed" / ".hydra").mkdir(parents=True)
    # A summary.json left unfinished by an old, non-atomic writer.
    (root / "torn").mkdir()
    (root / "torn" / "summary.json").write_text('{"scheduler": ')
    return root


@pytest.mark.slow
def test_failed_and_unfinished_runs_are_skipped_and_counted(sweep, tmp_path, capsys):
    runs, skipped = finished_runs(sweep)
    assert sorted(r["_dir"].rsplit("/", 1)[1] for r in runs) == ["ilp_always", "ilp_tau067", "round_robin_always",
                                                                  "round_robin_tau067"]
    why = {d.name: w for d, w in skipped}
    assert set(why) == {"failed_all", "failed_config", "killed", "torn"}
    assert why["failed_all"].startswith("failed (exit 1, stage run): all 120 requests failed")
    assert why["failed_config"] == "failed (exit 2, stage config): seed must be >= 0"
    assert why["killed"] == "no summary.json (the run did not finish)"
    assert why["torn"].startswith("unreadable summary.json")

    collect(sweep, tmp_path / "results")
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"skipped 4 run(s) under {sweep} (failed, unfinished or damaged; not in the tables):"
    assert len(err) == 5 and all(ln.startswith(f"  {sweep}/") for ln in err[1:])
    rows = list(csv.DictReader(open(tmp_path / "results" / "runs.csv")))
    assert len(rows) == 4 and {r["seed"] for r in rows} == {"0"}


def test_a_sweep_where_every_run_failed_says_so(tmp_path, capsys):
    record_failure(tmp_path / "a", [], "boom", 1, "expert")
    with pytest.raises(FileNotFoundError, match="all 1 failed or did not finish"):
        collect(tmp_path, tmp_path / "out")
    assert json.loads((tmp_path / "a" / "error.json").read_text())["stage"] == "expert"


@pytest.mark.slow   # a second and a half or more
def test_runs_off_the_papers_cluster_are_left_out_and_colliding_runs_refused(tmp_path, capsys):
    root = tmp_path / "sweep"
    ov = [*TINY, "scheduler=round_robin", "aggregation=always"]
    assert run_job(compose(ov), root / "rr", ov) == 0
    wide = [*ov, "cluster.n_workers=8"]
    assert run_job(compose(wide), root / "rr8", wide) == 0
    collect(root, tmp_path / "out")
    err = capsys.readouterr().err
    assert "rr8: a cluster of 8 workers, not the paper's 4" in err
    rows = list(csv.DictReader(open(tmp_path / "out" / "runs.csv")))
    assert len(rows) == 1                                   # the 8-worker run is not scored against the paper
    # Same policy, workload, seed and settings, other profiles: the tables cannot tell them apart.
    other = [*ov, "workload.profiles=paper_a100"]
    assert run_job(compose(other), root / "rr_other", other) == 0
    with pytest.raises(ValueError, match="differ in workload.profiles; collect one setting per sweep folder"):
        collect(root, tmp_path / "out2")
    # A copy of a run (a backup beside it) differs in nothing: said as such, not as a hidden setting.
    import shutil
    shutil.rmtree(root / "rr_other")
    shutil.copytree(root / "rr", root / "rr_copy")
    with pytest.raises(ValueError, match="rr_copy hold the same run twice .*keep one of them"):
        collect(root, tmp_path / "out3")


def test_a_failure_record_without_its_error_field_shows_its_message(tmp_path):
    (tmp_path / "hand").mkdir()
    (tmp_path / "hand" / "error.json").write_text(json.dumps({"message": "killed by the queue", "exit_code": 1}))
    _, skipped = finished_runs(tmp_path)
    assert [w for _, w in skipped] == ["failed (exit 1, stage ?): killed by the queue"]


def test_a_missing_sweep_folder_is_named_not_blamed_on_an_unrun_sweep(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope is not there: give the sweep's folder"):
        collect(tmp_path / "nope", tmp_path / "out")
    (tmp_path / "f").write_text("x")
    with pytest.raises(FileNotFoundError, match=r"f is a file"):
        collect(tmp_path / "f", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_sweep_without_the_papers_arms_is_collected_with_an_empty_paper_table(tmp_path, capsys):
    for seed in (0, 1):
        ov = [*TINY[:-1], f"seed={seed}", "scheduler=fifo"]
        assert run_job(compose(ov), tmp_path / "sweep" / f"s{seed}", ov) == 0
    collect(tmp_path / "sweep", tmp_path / "out")   # was a pandas merge error
    assert "the paper table is empty; `mosaic runs" in capsys.readouterr().err
    assert len(list(csv.DictReader(open(tmp_path / "out" / "runs.csv")))) == 2
    assert list(csv.DictReader(open(tmp_path / "out" / "paper_table.csv"))) == []


def test_agent_graph_runs_are_left_out_of_the_paper_tables_by_name():
    from mosaic.analysis.collect import paper_setting

    flat = {"_dir": "a", "workers": [{}] * 4}
    graph = {"_dir": "b", "workers": [{}] * 4, "topology": {"kind": "tree", "name": "tree"}}
    keep, off = paper_setting([flat, graph])
    assert keep == [flat] and off == [("b", "an agent-graph or online run (topology tree); experiments/faster_moa.py tables those")]


def test_runs_with_failed_requests_are_left_out_and_a_real_engines_values_are_not_called_simulated():
    """A vLLM run with 50 of 187 requests failed went into the paper table, headed "simulated"."""
    from mosaic.analysis.collect import paper_setting
    from mosaic.analysis.paper_table import render_markdown

    ok = {"_dir": "a", "workers": [{}] * 4, "n_failed_requests": 0}
    degraded = {"_dir": "b", "workers": [{}] * 4, "n_failed_requests": 50, "n_expert_requests": 140,
                "n_aggregator_requests": 47, "first_request_error": "engine for Qwen failed to start"}
    keep, off = paper_setting([ok, degraded])
    assert keep == [ok] and off == [("b", "50 of 187 requests failed (first: engine for Qwen failed to start)")]
    assert render_markdown([], "cmd").startswith("# MOSAIC vs round-robin: simulated (")
    assert render_markdown([], "cmd", ["vllm", "vllm"]).startswith("# MOSAIC vs round-robin: measured on vllm (")
    assert render_markdown([], "cmd", ["sim", "vllm"]).startswith("# MOSAIC vs round-robin: from backends sim, vllm (")


def test_a_run_whose_tables_were_damaged_is_skipped_naming_the_file(sweep, tmp_path, capsys):
    """A sessions.csv without a column, or with text for a time, was a KeyError / TypeError traceback
    (or an empty cell in the figure data); it is skipped like a failed run, naming file and column."""
    import shutil

    root = tmp_path / "sweep"
    for name in ("ilp_always", "round_robin_always"):
        shutil.copytree(sweep / name, root / name)
    rows = list(csv.DictReader(open(root / "round_robin_always" / "sessions.csv")))
    rows[0]["run_end_s"] = "nan"
    with open(root / "round_robin_always" / "sessions.csv", "w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    collect(root, tmp_path / "out")
    err = capsys.readouterr().err
    assert f"skipped 1 run(s) under {root}" in err and "sessions.csv: line 2, column run_end_s: 'nan'" in err
    assert [r["scheduler"] for r in csv.DictReader(open(tmp_path / "out" / "runs.csv"))] == ["ilp"]
