"""experiments/compare_graph_runs.py: two run folders of one agent graph, compared request by request."""
import subprocess
import sys
from pathlib import Path

import pytest

from mosaic.analysis.graph_compare import compare_graph_runs, render

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from mosaic.run.app import run as run_app, write_outputs
    from mosaic.run.builder import compose

    d = tmp_path_factory.mktemp("graphs")
    tree = ["topology=tree", "workload=synth_small", "workload.n_queries=3", "topology.overlap=incremental"]
    write_outputs(run_app(compose(tree)), d / "a")
    write_outputs(run_app(compose(tree)), d / "b")                                    # same seed: same run
    write_outputs(run_app(compose([*tree, "topology.overlap=none"])), d / "none")      # same graph, other timing
    write_outputs(run_app(compose(["workload=synth_small", "workload.n_queries=2"])), d / "flat")
    write_outputs(run_app(compose([*tree, "workload.n_queries=4"])), d / "more")       # a larger graph
    return d


@pytest.mark.slow
def test_a_run_against_itself_gives_ratios_of_one(folders):
    table, latency = compare_graph_runs(folders / "a", folders / "b")
    assert set(table.layer) == {1, 2, 3} and (table.requests > 0).all()
    decode = table[table.metric == "decode ms/token"]
    assert (decode.ratio == 1.0).all() and (decode["first"] == decode["second"]).all()
    assert latency["first_p50"] == latency["second_p50"] > 0 and latency["decode_ratio"] == 1.0


def test_engines_decoding_slower_in_the_second_run_show_in_its_decode_ratio(folders, tmp_path):
    """The speed the engines ran at (a host slower than its profile): every request's decode stretched
    by 1.25 gives 1.25, whatever else moved."""
    import shutil

    import pandas as pd

    d = tmp_path / "slow"
    shutil.copytree(folders / "a", d)
    t = pd.read_csv(d / "trace.csv", dtype=str, keep_default_na=False)
    served = t.status == "served"
    first, finish = t.loc[served, "first_token_s"].astype(float), t.loc[served, "finish_s"].astype(float)
    t.loc[served, "finish_s"] = (first + 1.25 * (finish - first)).map(repr)
    t.to_csv(d / "trace.csv", index=False)
    table, latency = compare_graph_runs(folders / "a", d)
    assert latency["decode_ratio"] == pytest.approx(1.25)
    assert "decode ms/token second / first 1.25" in render(folders / "a", d, table, latency)


def test_another_timing_of_the_same_graph_shows_where_it_differs(folders):
    table, latency = compare_graph_runs(folders / "a", folders / "none")
    cached = table[(table.metric == "cached prompt tokens") & (table.layer == 2)]
    assert cached["first"].iloc[0] > 0 and cached["second"].iloc[0] == 0   # overlap off: no prefill-ahead hits
    text = render(folders / "a", folders / "none", table, latency)
    assert "| 2 | cached prompt tokens |" in text and "query latency p50" in text


def test_a_flat_run_or_a_missing_folder_is_one_line_exit_2(folders, tmp_path):
    for args, says in ([folders / "a", folders / "flat"], "is a flat MoA run"), \
                      ([folders / "a", tmp_path / "nope"], "not a finished run folder"):
        r = subprocess.run([sys.executable, str(ROOT / "experiments/compare_graph_runs.py"), *map(str, args)],
                           capture_output=True, text=True, cwd=ROOT)
        assert r.returncode == 2 and says in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_two_different_graphs_or_damaged_columns_are_refused_not_compared(folders, tmp_path):
    import shutil

    import pandas as pd

    # "more" holds every request of "a" and more: sharing requests does not make it the same graph
    with pytest.raises(ValueError, match=r"ran different graphs \(\d+ agent requests in one only"):
        compare_graph_runs(folders / "a", folders / "more")
    d = tmp_path / "z"
    shutil.copytree(folders / "a", d)
    q = pd.read_csv(d / "queries.csv", dtype=str, keep_default_na=False)
    q["latency_s"] = "0"
    q.to_csv(d / "queries.csv", index=False)
    table, latency = compare_graph_runs(d, folders / "b")   # a zero latency has no ratio (was ZeroDivisionError)
    assert "p50 0.000 / " in render(d, folders / "b", table, latency) and "(n/a)" in render(d, folders / "b", table, latency)
    q.drop(columns=["latency_s"]).to_csv(d / "queries.csv", index=False)
    r = subprocess.run([sys.executable, str(ROOT / "experiments/compare_graph_runs.py"), str(d), str(folders / "b")],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "queries.csv: no column latency_s" in r.stderr and "Traceback" not in r.stderr
