"""Every run draws its timeline from its own files: a bar per load and per session, on each
session's worker, both stages on one axis; a bad folder is one line."""
import csv
import json

import pytest

from mosaic.run.app import run, write_outputs
from mosaic.run.builder import compose
from mosaic.run.timeline import TIMELINE_FILE, figure, main


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    write_outputs(run(compose(["workload.n_queries=30", "cluster.n_workers=3"])), d)
    return d


def test_the_run_folder_holds_its_timeline(run_dir):
    png = (run_dir / TIMELINE_FILE).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width = int.from_bytes(png[16:20], "big")
    assert width >= 1000                      # 10 inches at 110 dpi


def test_bars_follow_the_sessions_file(run_dir):
    rows = list(csv.DictReader(open(run_dir / "sessions.csv")))
    summary = json.loads((run_dir / "summary.json").read_text())
    ax = figure(rows, summary).axes[0]
    bars = ax.patches
    # The tensor-parallel aggregator is one engine over the three workers: one bar over them all.
    tp = [r for r in rows if int(r["tp_size"]) > 1]
    assert len(tp) == 3 and summary["aggregator_placement"] == "tp"
    drawn = [r for r in rows if int(r["tp_size"]) == 1] + tp[:1]
    assert len(bars) == 2 * len(drawn)         # a load bar and a serving bar per engine
    expert_end = summary["expert_stage_s"]
    for r, load, serve in zip(drawn, bars[0::2], bars[1::2]):
        shift = expert_end if r["stage"] == "aggregator" else 0.0
        assert serve.get_x() == pytest.approx(shift + float(r["run_start_s"]))
        assert serve.get_width() == pytest.approx(float(r["run_end_s"]) - float(r["run_start_s"]))
        assert load.get_x() == pytest.approx(shift + float(r["load_start_s"]))
        if r in tp:   # from GPU 0's bar top to GPU 2's bar bottom
            assert (serve.get_y(), serve.get_height()) == pytest.approx((-0.4, 2.8))
        else:
            assert serve.get_y() + serve.get_height() / 2 == pytest.approx(int(r["worker"]))
    assert [t.get_text() for t in ax.texts if "engine" in t.get_text()] == [f"{tp[0]['model']}: one TP-3 engine"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["GPU 0", "GPU 1", "GPU 2"]
    assert f"{summary['end_to_end_s']:.0f} s" in ax.get_title()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[-1] == "model load" and set(labels[:-1]) == {r["model"] for r in rows}


def test_a_folder_without_a_finished_run_is_one_line(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    assert "not a finished run folder: no sessions.csv, summary.json" in capsys.readouterr().err


def test_run_folders_of_both_kinds_share_one_figure(tmp_path):
    from mosaic.analysis.figures import run_dir_timelines
    from mosaic.run.app import run as run_app, write_outputs
    from mosaic.run.builder import compose

    flat, graph = tmp_path / "flat", tmp_path / "graph"
    write_outputs(run_app(compose(["workload=synth_small", "workload.n_queries=4"])), flat)
    write_outputs(run_app(compose(["topology=tree", "workload=synth_small", "workload.n_queries=2"])), graph)
    run_dir_timelines([flat, graph], tmp_path / "both.png")
    assert (tmp_path / "both.png").stat().st_size > 10_000


@pytest.mark.parametrize("topology", ["flat", "tree"])
def test_a_signal_while_the_timeline_is_drawn_leaves_no_summary(tmp_path, monkeypatch, topology):
    """The timeline was drawn after summary.json: a SIGTERM while drawing left a finished run's
    files beside the error.json the signal wrote, and readers skipped it as failed."""
    from mosaic.run import app

    out = app.run(compose(["workload=synth_small", "workload.n_queries=2", f"topology={topology}"]))

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(app.timeline, "write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        app.write_outputs(out, tmp_path)
    assert (tmp_path / "trace.csv").is_file() and not (tmp_path / "summary.json").exists()


def _copy(run_dir, to):
    import shutil
    shutil.copytree(run_dir, to)
    return to


def test_an_unwritable_picture_is_one_line_and_the_other_folders_are_still_drawn(run_dir, tmp_path, capsys):
    blocked = _copy(run_dir, tmp_path / "blocked")
    (blocked / TIMELINE_FILE).unlink()
    (blocked / TIMELINE_FILE).mkdir()              # where the picture goes is a folder
    good = _copy(run_dir, tmp_path / "good")
    (good / TIMELINE_FILE).unlink()
    assert main([str(tmp_path / "nothing"), str(blocked), str(good)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[1].startswith(f"error: cannot write {blocked / TIMELINE_FILE}: Is a directory; free space")
    assert err[-1] == "error: 2 of 3 run folders not done (above)" and "Traceback" not in "".join(err)
    assert (good / TIMELINE_FILE).read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in blocked.iterdir() if p.name.startswith(".")) == []   # no temporary left


def test_perfetto_says_a_failed_write_in_one_line(run_dir, tmp_path, capsys):
    from mosaic.run.perfetto import PERFETTO_FILE, main as perfetto

    blocked = _copy(run_dir, tmp_path / "blocked")
    (blocked / PERFETTO_FILE).unlink()
    (blocked / PERFETTO_FILE).mkdir()
    good = _copy(run_dir, tmp_path / "good")
    before = (good / PERFETTO_FILE).read_text()
    (good / PERFETTO_FILE).unlink()
    assert perfetto([str(blocked), str(good)]) == 2
    err = capsys.readouterr().err
    assert f"error: cannot write {blocked / PERFETTO_FILE}: Is a directory" in err and "Traceback" not in err
    assert json.loads((good / PERFETTO_FILE).read_text()) == json.loads(before)


def test_a_failed_pdf_is_named_as_the_pdf(run_dir, tmp_path, capsys):
    from mosaic.run.timeline import main as timeline

    d = _copy(run_dir, tmp_path / "pdf_blocked")
    (d / "timeline.pdf").mkdir()
    assert timeline([str(d), "--pdf"]) == 2
    err = capsys.readouterr().err
    assert f"error: cannot write {d / 'timeline.pdf'}: Is a directory" in err and "Traceback" not in err


def test_a_library_error_over_a_full_disk_names_the_disk(tmp_path):
    # matplotlib's PDF writer, failing to close its stream after ENOSPC, raises AttributeError.
    from mosaic.core.rundir import write_error

    try:
        try:
            raise OSError(28, "No space left on device")
        except OSError:
            raise AttributeError("'Stream' object has no attribute 'pos'")
    except AttributeError as e:
        said = write_error(tmp_path / "timeline.pdf", e)
    assert said.startswith(f"cannot write {tmp_path / 'timeline.pdf'}: No space left on device; ")
    assert write_error(tmp_path / "x", ValueError("not a write")) is None


def test_a_sweeps_folder_is_each_finished_run_drawn_and_exported(run_dir, tmp_path, capsys):
    """`mosaic runs` takes a sweep's folder; `mosaic timeline` and `mosaic perfetto` refused it."""
    import shutil

    from mosaic.run import perfetto

    sweep = tmp_path / "sweep"
    for name in ("seed=0", "seed=1"):
        shutil.copytree(run_dir, sweep / name)
        (sweep / name / TIMELINE_FILE).unlink()
        (sweep / name / "trace.perfetto.json").unlink()
    (sweep / "seed=2").mkdir()
    (sweep / "seed=2" / "error.json").write_text(json.dumps({"error": "boom", "stage": "run", "exit_code": 1}))
    assert main([str(sweep)]) == 0
    assert all((sweep / n / TIMELINE_FILE).is_file() for n in ("seed=0", "seed=1"))
    assert "left out 1 run(s) of the sweep that failed or did not finish" in capsys.readouterr().err
    assert perfetto.main([str(sweep)]) == 0
    assert all(json.loads((sweep / n / "trace.perfetto.json").read_text())["traceEvents"] for n in ("seed=0", "seed=1"))
    assert not (sweep / "seed=2" / TIMELINE_FILE).exists()


def test_a_model_keeps_its_colour_across_runs_and_the_stage_boundary_is_named(run_dir):
    from mosaic.run.timeline import model_colours
    rows = list(csv.DictReader(open(run_dir / "sessions.csv")))
    summary = json.loads((run_dir / "summary.json").read_text())
    ax = figure(rows, summary).axes[0]
    colour = {}
    for r, serve in zip(rows, ax.patches[1::2]):
        colour.setdefault(r["model"], serve.get_facecolor())
    # the same model drawn in another run, beside other models, gets the same colour
    others = [{**r, "model": "AAA-model"} for r in rows[:1]]   # sorts first: shifts every position
    ax2 = figure(rows[:1] + others, summary).axes[0]
    assert ax2.patches[1].get_facecolor() == colour[rows[0]["model"]]
    # distinct within a figure, even where two names hash to one palette slot
    idx = model_colours([f"m{i}" for i in range(20)])
    assert sorted(idx.values()) == list(range(20))
    assert "aggregator stage" in [t.get_text().strip() for t in ax.texts]


def test_an_agent_graph_timeline_draws_when_each_engine_held_requests(tmp_path):
    from mosaic.run.app import run as run_app, write_outputs
    from mosaic.run.builder import compose
    from mosaic.run.timeline import busy_spans, from_run_dir

    d = tmp_path / "online"
    write_outputs(run_app(compose(["workload=synth_small", "workload.n_queries=6", "cluster.n_workers=6",
                                   "arrivals=poisson", "arrivals.rate=0.01"])), d)
    trace = list(csv.DictReader(open(d / "trace.csv")))
    spans = busy_spans(trace)
    # a trickle of queries: each engine is busy in bursts, idle between them
    assert any(len(v) > 1 for v in spans.values())
    for w, v in spans.items():
        assert all(a < b <= c for (a, b), (c, _) in zip(v, v[1:]))   # merged, in order, disjoint
        served = [r for r in trace if r["worker"] == str(w) and r["status"] == "served"]
        assert sum(b - a for a, b in v) <= sum(float(r["finish_s"]) - float(r["start_s"]) for r in served) + 1e-9
    rows = list(csv.DictReader(open(d / "sessions.csv")))
    summary = json.loads((d / "summary.json").read_text())
    ax = figure(rows, summary, spans).axes[0]
    solid = [b for b in ax.patches if b.get_alpha() in (None, 1.0) and b.get_hatch() is None]
    assert len(solid) == sum(len(v) for v in spans.values())   # a solid span per busy interval
    assert "loaded, no request" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert from_run_dir(d) == [d / TIMELINE_FILE]


def test_the_title_names_the_profiles_the_costs_came_from(run_dir):
    """A CPU profile simulated on a cluster called A100s: the title says whose speeds they are."""
    from mosaic.run.timeline import run_title

    summary = json.loads((run_dir / "summary.json").read_text())
    summary["provenance"] = {"config": {"cluster": {"device": "A100-80GB"}, "workload": {"profiles": "tiny_cpu"},
                                        "topology": {"profiles": None}}}
    assert "3x A100-80GB (profiles tiny_cpu), backend sim" in run_title(summary)
    summary["provenance"]["config"]["workload"]["profiles"] = "outputs/profiles/mine.calibrated.yaml"
    summary["profile_calibration"] = {"workload": {"base": "tiny_cpu"}}
    assert "(profiles mine.calibrated, calibrated)" in run_title(summary)
