"""load_runs: any sweep as a DataFrame, a row per finished run and a column per override."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mosaic.analysis import load_requests, load_runs
from mosaic.analysis.runs import write_table
from mosaic.run.builder import compose
from mosaic.cli.job import run_job


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


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("requests")
    assert job(root / "a", "workload=smoke", "seed=1") == 0
    assert job(root / "b", "workload=smoke", "scheduler=round_robin", "seed=2") == 0
    return root


@pytest.mark.slow
def test_every_request_of_every_run_is_one_row_with_its_run(two_runs):
    req = load_requests(two_runs)
    for d, seed in (("a", 1), ("b", 2)):
        rows = list(csv.DictReader(open(two_runs / d / "trace.csv")))
        mine = req[req["run_dir"] == str(two_runs / d)]
        assert len(mine) == len(rows) and set(mine["seed"]) == {seed}
        assert list(mine["request_id"]) == [r["request_id"] for r in rows]
        assert list(mine["output_tokens"]) == [int(r["output_tokens"]) for r in rows]
        assert list(mine["answer"]) == [r["answer"] for r in rows]   # text stays text ("" not NaN)
    assert set(req["scheduler"]) == {"engine_aware", "round_robin"}   # as in load_runs: the override, or the summary's


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_requests_table_round_trips_and_mixed_overrides_become_text(two_runs, tmp_path, suffix):
    req = load_requests(two_runs)
    req["mixed"] = [1 if i % 2 else "x" for i in range(len(req))]   # a number in one run, text in another
    write_table(req, tmp_path / f"r{suffix}")
    back = pd.read_parquet(tmp_path / f"r{suffix}") if suffix == ".parquet" else pd.read_csv(tmp_path / f"r{suffix}")
    assert len(back) == len(req)
    assert list(back["finish_s"]) == pytest.approx(list(req["finish_s"]))
    assert list(back["mixed"].astype(str)) == [str(v) for v in req["mixed"]]


def test_mosaic_runs_writes_the_requests_and_refuses_another_suffix(two_runs, tmp_path):
    out = tmp_path / "all.parquet"
    p = subprocess.run([sys.executable, "-m", "mosaic", "runs", str(two_runs), "--requests", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert len(pd.read_parquet(out)) == len(load_requests(two_runs))
    p = subprocess.run([sys.executable, "-m", "mosaic", "runs", str(two_runs), "--requests", str(tmp_path / "x.xlsx")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stderr.strip() == f"error: --requests {tmp_path / 'x.xlsx'}: name a .parquet or a .csv file"


@pytest.mark.parametrize("args, said", [
    (("--csv", "{t}/same.csv", "--requests", "{t}/same.csv"), "error: --csv and --requests both name {t}/same.csv"),
    (("--csv", "{t}/r.parquet"), "error: --csv {t}/r.parquet: it writes CSV; name a .csv file")])
def test_mosaic_runs_refuses_outputs_that_would_overwrite_or_mislabel(two_runs, tmp_path, args, said):
    p = subprocess.run([sys.executable, "-m", "mosaic", "runs", str(two_runs), *(a.format(t=tmp_path) for a in args)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stderr.startswith(said.format(t=tmp_path)) and p.stderr.count("\n") == 1, p.stderr
    assert not list(tmp_path.glob("same.csv")) and not list(tmp_path.glob("r.parquet"))


def test_mosaic_runs_refuses_to_write_over_a_runs_own_outputs(two_runs):
    """--csv .../<run>/trace.csv replaced that run's trace with the table, exit 0 (the run was still
    listed as finished; --requests then failed on it)."""
    run = sorted(p.parent for p in two_runs.rglob("summary.json"))[0]
    before = (run / "trace.csv").read_bytes()
    for flag in ("--csv", "--requests"):
        p = subprocess.run([sys.executable, "-m", "mosaic", "runs", str(two_runs), flag, str(run / "trace.csv")],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 2 and p.stderr.strip() == (
            f"error: {flag} {run / 'trace.csv'} is an output of the run in {run}; name a file outside run "
            "folders, or another name"), p.stderr
    assert (run / "trace.csv").read_bytes() == before


def test_not_a_summary_is_skipped_and_bad_output_paths_are_refused(two_runs, tmp_path):
    odd = two_runs.parent / "odd"
    (odd / "x").mkdir(parents=True)
    (odd / "x" / "summary.json").write_text("null")
    (odd / "y").mkdir()
    (odd / "y" / "summary.json").write_text("{}")
    assert load_runs(odd).empty and len(load_runs(odd).attrs["skipped"]) == 2
    for flag, target in (("--csv", tmp_path / "missing" / "r.csv"), ("--csv", tmp_path),
                         ("--requests", tmp_path / "missing" / "r.parquet")):
        p = subprocess.run([sys.executable, "-m", "mosaic", "runs", str(two_runs), flag, str(target)],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 2 and p.stderr.startswith(f"error: {flag} {target}") and "Traceback" not in p.stderr
    assert not (tmp_path / "missing").exists()


def test_a_summary_with_nan_or_cut_short_is_refused_naming_the_file(two_runs, tmp_path):
    import shutil

    from mosaic.core.rundir import read_run_dir

    src = sorted(p.parent for p in two_runs.rglob("summary.json"))[0]
    nan, cut = tmp_path / "sweep" / "nan", tmp_path / "cut"
    shutil.copytree(src, nan)
    shutil.copytree(src, cut)
    s = json.loads((nan / "summary.json").read_text())
    s["expert_stage_s"] = float("nan")
    (nan / "summary.json").write_text(json.dumps(s))          # Python writes NaN unless told not to
    df = load_runs(tmp_path / "sweep")
    assert df.empty and "NaN is not a number JSON allows" in df.attrs["skipped"][0][1]
    text = (cut / "summary.json").read_text()
    (cut / "summary.json").write_text(text[: len(text) // 2])
    with pytest.raises(ValueError, match=rf"{cut / 'summary.json'}: not a summary this package wrote"):
        read_run_dir(cut)


@pytest.mark.parametrize("field, value, said", [
    ("seed", [1], "seed is [1], not an integer"),            # was a TypeError traceback in collect.py
    ("scheduler", {"name": "ilp"}, "scheduler is {'name': 'ilp'}, not a name"),
    ("end_to_end_s", "fast", "end_to_end_s is 'fast', not a time in [0, 1e+09] s"),   # was a text cell
    ("end_to_end_s", None, "no end_to_end_s; not a summary this package wrote"),   # was a NaN cell
    ("expert_stage_s", "fast", "expert_stage_s is 'fast', not a time"),
    ("serving", {"expert": {"ttft_s": {"p50": True}}}, "serving.expert.ttft_s.p50 is True"),
    ("end_to_end_s", -5, "end_to_end_s is -5, not a time in [0, 1e+09] s"),   # was listed as -5.0
    ("expert_predicted_makespan_s", -5, "expert_predicted_makespan_s is -5, a negative time"),
    ("accuracy", "high", "accuracy is 'high', not a fraction in [0, 1]"),     # was a text cell
    ("skip_rate", 1.5, "skip_rate is 1.5, not a fraction"),
    ("settings", "x", "settings is 'x', not a mapping"),                      # was a TypeError in collect.py
    ("serving", [], "serving is [], not a mapping of the stages' serving metrics"),   # dropped its columns
    ("serving", {"expert": [1]}, "serving.expert is [1], not a mapping"),
    ("admission", "x", "admission is 'x', not a mapping"),
    ("n_queries", -4, "n_queries is -4, not a count"),                        # was tabled as given
    ("n_expert_requests", 1.5, "n_expert_requests is 1.5, not a count"),      # made the column float
    ("n_queries", "48", "n_queries is '48', not a count"),
])
def test_a_summary_changed_since_its_run_is_skipped_naming_the_field(two_runs, tmp_path, field, value, said):
    import shutil

    src = sorted(p.parent for p in two_runs.rglob("summary.json"))[0]
    shutil.copytree(src, tmp_path / "sweep" / "ok")
    shutil.copytree(src, tmp_path / "sweep" / "bad")
    s = json.loads((tmp_path / "sweep" / "bad" / "summary.json").read_text())
    s[field] = value
    (tmp_path / "sweep" / "bad" / "summary.json").write_text(json.dumps(s))
    df = load_runs(tmp_path / "sweep")
    assert list(df["run_dir"]) == [str(tmp_path / "sweep" / "ok")]
    (d, why), = df.attrs["skipped"]
    assert d.endswith("bad") and why.startswith(f"summary.json is damaged: {said}"), why
    p = subprocess.run([sys.executable, "experiments/collect.py", "--sweep", str(tmp_path / "sweep"),
                        "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300,
                       cwd=Path(__file__).resolve().parents[2]) if field == "seed" else None
    if p is not None:
        assert "Traceback" not in p.stderr and f"skipped 1 run(s) under {tmp_path / 'sweep'}" in p.stderr, p.stderr


@pytest.mark.skipif(not __import__("os").path.isdir("/proc/self"), reason="needs /proc")
def test_mosaic_runs_refuses_a_folder_that_takes_no_files(two_runs):
    p = subprocess.run([sys.executable, "-m", "mosaic", "runs", str(two_runs), "--csv", "/proc/x.csv"],
                       capture_output=True, text=True)
    assert p.returncode == 2 and p.stderr.strip().splitlines() == [
        "error: --csv's folder /proc is not a writable directory (files cannot be created in it: "
        "No such file or directory); choose another one"]


def test_a_list_valued_override_is_one_value_per_request_row(tmp_path):
    overrides = ["workload=synth_small", "workload.n_queries=2", "topology=tree", "topology.agents=[Qwen,Gemma,LlamaR1]"]
    assert job(tmp_path / "g", *overrides) == 0
    req = load_requests(tmp_path)
    assert len(req) == 2 * 13 and all(list(v) == ["Qwen", "Gemma", "LlamaR1"] for v in req["topology.agents"])
    write_table(req, tmp_path / "r.csv")
    assert len(pd.read_csv(tmp_path / "r.csv")) == 26


def test_a_missing_or_damaged_trace_is_one_line_naming_the_file(two_runs, tmp_path):
    """mosaic runs --requests: a run folder without trace.csv was a FileNotFoundError traceback, a
    time changed to text went into the table as text."""
    import shutil

    src = sorted(p.parent for p in two_runs.rglob("summary.json"))[0]
    shutil.copytree(src, tmp_path / "sweep" / "a")
    trace = tmp_path / "sweep" / "a" / "trace.csv"
    t = pd.read_csv(trace, dtype=str, keep_default_na=False)
    t.loc[2, "finish_s"] = "soon"
    t.to_csv(trace, index=False)
    with pytest.raises(ValueError, match=rf"{trace}: line 4, column finish_s: 'soon' is not a finite number"):
        load_requests(tmp_path / "sweep")
    t.loc[2, "finish_s"] = ""   # a served request without its finish was exported with the cell empty
    t.to_csv(trace, index=False)
    with pytest.raises(ValueError, match=rf"{trace}: line 4, column finish_s: empty for a request that was served"):
        load_requests(tmp_path / "sweep")
    t.loc[2, "finish_s"] = "0.001"   # before its first token: was exported as it was
    t.to_csv(trace, index=False)
    with pytest.raises(ValueError, match=rf"{trace}: line 4: finish_s 0.001 before first_token_s"):
        load_requests(tmp_path / "sweep")
    t.loc[2, "finish_s"] = "-50"
    t.to_csv(trace, index=False)
    with pytest.raises(ValueError, match=rf"{trace}: line 4, column finish_s: -50 is outside \[0, 1e\+09\]"):
        load_requests(tmp_path / "sweep")
    t.drop(columns=["finish_s"]).to_csv(trace, index=False)   # was exported with the column empty
    with pytest.raises(ValueError, match=rf"{trace}: no column finish_s"):
        load_requests(tmp_path / "sweep")
    trace.unlink()
    p = subprocess.run([sys.executable, "-m", "mosaic", "runs", str(tmp_path / "sweep"), "--requests",
                        str(tmp_path / "r.csv")], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stderr.strip() == (
        f"error: {trace}: no such file, so the run's requests cannot be listed; rerun the run or move its "
        "folder out of the sweep"), p.stderr
    assert not (tmp_path / "r.csv").exists()


def test_an_agent_graphs_requests_are_checked_and_typed_as_every_reader_checks_them(tmp_path):
    """`mosaic runs --requests` checked a graph run's trace.csv by rules of its own: the graph's
    columns (layer, status, release_s, cached_tokens) not at all. Now the one check of
    mosaic/core/rundir.py, as the timeline and the Perfetto export make it."""
    overrides = ["workload=synth_small", "workload.n_queries=2", "topology=tree", "topology.agents=[Qwen,Gemma,LlamaR1]",
                 "topology.early_exit=agreement"]
    assert job(tmp_path / "g", *overrides) == 0
    req = load_requests(tmp_path)
    assert len(req) == 26 and pd.api.types.is_float_dtype(req["release_s"])
    assert pd.api.types.is_integer_dtype(req["layer"]) and req["answer"].map(type).eq(str).all()
    assert (req["status"] == "cancelled").sum() == 4 and req["finish_s"].notna().all()
    trace = tmp_path / "g" / "trace.csv"
    t = pd.read_csv(trace, dtype=str, keep_default_na=False)
    t.loc[0, "cached_tokens"] = "-3"
    t.to_csv(trace, index=False)
    with pytest.raises(ValueError, match=rf"{trace}: line 2, column cached_tokens: -3 is outside"):
        load_requests(tmp_path)
    t.drop(columns=["layer"]).to_csv(trace, index=False)
    with pytest.raises(ValueError, match=rf"{trace}: no column layer"):
        load_requests(tmp_path)
