"""Trace loader: upstream field names, damaged files, and the data-quality report (issue 8, items 4-5)."""
import json
import logging
import zipfile
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from mosaic.run.app import run
from mosaic.config.schema import WorkloadConfig
from mosaic.core.errors import ConfigError
from mosaic.profiles import load_profiles
from mosaic.workload.build import build_workload
from mosaic.workload.sources.data_quality import DataReport
from mosaic.workload.tokens import estimate_tokens
from mosaic.workload.sources.recorded_files import read_mmlu_pro_zip, read_trace, trace_stats
from mosaic.workload.types import Workload
from tests.helpers import config, needs_shared

LETTERS = "ABCD"
MEMBER = "model_outputs.json"


def record(qid, stem, gold="A", pred="A", text="Because. The answer is (A).", options=("w", "x", "y", "z"),
           text_field="generated_text"):
    return {"question_id": qid, "question": stem, "options": list(options), "answer": gold,
            "answer_index": LETTERS.index(gold), "category": "physics", "src": "fake", "pred": pred,
            text_field: text, "cot_content": ""}


def write_zip(path: Path, records, compression=zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as z:
        z.writestr(MEMBER, json.dumps(records))
    return path


def member_data_offset(data: bytes) -> int:
    """Where the first member's (compressed) bytes start: after its local header, name and extra."""
    return 30 + int.from_bytes(data[26:28], "little") + int.from_bytes(data[28:30], "little")


# ---------------------------------------------------------------- upstream field name

def test_upstream_model_outputs_field_reads_like_generated_text(tmp_path):
    text = "Step by step, the force doubles. The answer is (B)."
    ours = read_mmlu_pro_zip(write_zip(tmp_path / "a.zip", [record(7, "Q?", pred="B", text=text)]))
    upstream = read_mmlu_pro_zip(write_zip(tmp_path / "b.zip", [record(7, "Q?", pred="B", text=text,
                                                                       text_field="model_outputs")]))
    assert ours == upstream
    assert upstream[0].output_tokens == estimate_tokens(text) > 1 and not upstream[0].censored


def test_record_without_any_text_field_names_both(tmp_path):
    rec = record(1, "Q?")
    del rec["generated_text"]
    with pytest.raises(ConfigError, match="record 0 has no field 'generated_text' .*'model_outputs'"):
        read_mmlu_pro_zip(write_zip(tmp_path / "m.zip", [rec]))


# ---------------------------------------------------------------- damaged files

def test_corrupt_deflate_stream_is_a_config_error(tmp_path):
    path = write_zip(tmp_path / "m.zip", [record(i, f"Q{i}?", text="x" * 300) for i in range(30)])
    data = bytearray(path.read_bytes())
    data[member_data_offset(data)] = 0xFF          # deflate block type 3: invalid
    path.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match=r"workload\.experts\.m: .*m\.zip: not a readable zip \(error: .*"
                                          r"replace the file") as e:
        read_trace(path, "mmlu_pro_zip", "workload.experts.m")
    assert "\n" not in str(e.value)


def test_crc_mismatch_is_a_config_error(tmp_path):
    path = write_zip(tmp_path / "m.zip", [record(1, "Q?")], zipfile.ZIP_STORED)
    data = bytearray(path.read_bytes())
    data[member_data_offset(data) + 5] ^= 1        # stored bytes change; the recorded CRC does not
    path.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match="not a readable zip.*Bad CRC-32"):
        read_mmlu_pro_zip(path)


def test_truncated_zip_is_a_config_error(tmp_path):
    path = write_zip(tmp_path / "m.zip", [record(i, f"Q{i}?") for i in range(30)])
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ConfigError, match="not a readable zip"):
        read_mmlu_pro_zip(path)


@pytest.mark.parametrize("qid", ["q-17", "12.5", "", None, -3, True])
def test_non_numeric_question_id_is_a_config_error(tmp_path, qid):
    path = write_zip(tmp_path / "m.zip", [record(1, "Q1?"), record(qid, "Q2?")])
    with pytest.raises(ConfigError, match=r"workload\.experts\.m: .*record 1 field 'question_id'"):
        read_trace(path, "mmlu_pro_zip", "workload.experts.m")


def test_numeric_string_question_id_is_accepted(tmp_path):
    (r,) = read_mmlu_pro_zip(write_zip(tmp_path / "m.zip", [record("42", "Q?")]))
    assert r.record_id == "00000042"


# ---------------------------------------------------------------- per-file report

def test_file_report_counts_each_kind_of_problem(tmp_path):
    recs = [record(1, "Fine?"),
            record(2, "No answer?", pred=None),                      # extractor found nothing
            record(3, "Odd answer?", pred="Z"),                      # not a letter at all
            record(4, "Too far?", pred="E"),                         # a letter beyond the 4 options
            record(5, "Quiet?", text=None),                          # null text
            record(6, "Blank?", text="  "),                          # empty text
            record(7, "Twice?", gold="A"), record(8, "Twice?", gold="C"),     # same question, two golds
            record(9, "Again?", pred="A"), record(10, "Again?", pred="B"),   # same question, two answers
            record(11, "Id one?", pred="A"), record(11, "Id two?", pred="D")]  # one id, two records
    path = write_zip(tmp_path / "m.zip", recs)
    s = trace_stats(path, "mmlu_pro_zip")
    assert (s.records, s.answers_missing, s.answers_unparseable) == (12, 1, 2)
    assert s.unparseable_examples == ("unparseable: 'E'", "unparseable: 'Z'")
    assert s.texts_missing == 2 and s.gold_unparseable == 0
    assert (s.duplicate_questions, s.conflicting_gold, s.conflicting_answers) == (2, 1, 1)
    assert (s.duplicate_ids, s.conflicting_ids) == (1, 1)
    by_id = {r.record_id: r for r in read_mmlu_pro_zip(path)}
    assert by_id["00000003"].answer is None and by_id["00000003"].answer_issue == "unparseable: 'Z'"
    assert by_id["00000002"].answer_issue == "missing" and by_id["00000005"].text_missing


def test_clean_file_reports_nothing(tmp_path):
    s = trace_stats(write_zip(tmp_path / "m.zip", [record(i, f"Q{i}?") for i in range(5)]), "mmlu_pro_zip")
    assert (s.answers_missing, s.answers_unparseable, s.texts_missing, s.duplicate_questions, s.duplicate_ids) \
        == (0, 0, 0, 0, 0)


# ---------------------------------------------------------------- workload report

def question_text(stem, options=("w", "x", "y", "z")):
    return f"{stem} The options are: " + " ".join(f"({LETTERS[i]}) {o}" for i, o in enumerate(options))


def fake_traces(tmp_path: Path, n_test=20, n_cal=12):
    """Three experts and an aggregator over n_test + n_cal questions. 'gaps' has no record for test
    questions 0 and 1; 'mute' gave no parseable answer on every third question."""
    qdir, tdir = tmp_path / "questions", tmp_path / "traces"
    qdir.mkdir()
    tdir.mkdir()
    stems = [f"Question {i}?" for i in range(n_test + n_cal)]
    gold = [LETTERS[i % 4] for i in range(len(stems))]
    rows = [{"question": question_text(s), "gold_answer": g, "category": "physics"} for s, g in zip(stems, gold)]
    (qdir / "test.json").write_text(json.dumps(rows[:n_test]))
    (qdir / "train.json").write_text(json.dumps(rows[n_test:]))
    for model in ("good", "gaps", "mute", "agg"):
        recs = [record(i, s, g, None if model == "mute" and i % 3 == 0 else g, "w" * 200 + " The answer is (A).")
                for i, (s, g) in enumerate(zip(stems, gold)) if not (model == "gaps" and i < 2)]
        write_zip(tdir / f"{model}.zip", recs)
    return {"name": "fake", "kind": "trace", "dataset": "fake", "profiles": "moa6_a100",
            "questions_dir": str(qdir), "traces_dir": str(tdir), "questions": "test.json",
            "calibration_questions": "train.json", "k": 2,
            "experts": {"good": {"file": "good.zip", "format": "mmlu_pro_zip", "profile": "Qwen"},
                        "gaps": {"file": "gaps.zip", "format": "mmlu_pro_zip", "profile": "Gemma"},
                        "mute": {"file": "mute.zip", "format": "mmlu_pro_zip", "profile": "GLM"}},
            "aggregator": {"file": "agg.zip", "format": "mmlu_pro_zip", "profile": "LlamaR1"}}


def trace_config(workload: dict):
    cfg = config("workload=trace_mmlu_pro", "scheduler=round_robin")
    cfg.workload = OmegaConf.merge(OmegaConf.structured(WorkloadConfig), workload)
    return cfg


def test_workload_carries_the_report_and_it_round_trips(tmp_path, profiles):
    w = build_workload(fake_traces(tmp_path), profiles, 0)
    r = w.data_report
    assert isinstance(r, DataReport)
    assert (r.questions, r.answered_by_all, r.dropped) == (20, 18, 2)
    assert r.missing_per_source == {"good": 0, "gaps": 2, "mute": 0, "aggregator": 0}
    # Of the 18 kept (questions 2..19), 'mute' has no vote on 3, 6, 9, 12, 15, 18.
    assert r.no_vote_per_source == {"good": 0, "gaps": 0, "mute": 6, "aggregator": 0}
    assert r.sources["mute"].answers_missing == 11   # every third of all 32 records
    assert len(w.queries) == 18
    assert Workload.from_json(w.to_json()).data_report == r
    problems = r.problems()
    assert problems[0].startswith("2 of 20 test questions dropped") and "gaps 2" in problems[0]
    assert "mute 6" in problems[1]


def test_n_queries_beyond_the_answered_questions_is_refused_not_clipped(tmp_path, profiles):
    w = fake_traces(tmp_path)
    assert len(build_workload({**w, "n_queries": 18}, profiles, 0).queries) == 18
    with pytest.raises(ConfigError, match=r"workload.n_queries must be in \[1, 18\].*got 19"):
        build_workload({**w, "n_queries": 19}, profiles, 0)


@pytest.mark.parametrize("key, blamed", [("traces_dir", "workload.traces_dir: .* is a file"),
                                         ("questions_dir", "workload.questions_dir: .* is a file")])
def test_a_folder_setting_that_names_a_file_is_blamed_on_that_setting(tmp_path, profiles, key, blamed):
    w = fake_traces(tmp_path)
    with pytest.raises(ConfigError, match=blamed):
        build_workload({**w, key: str(tmp_path / "traces" / "good.zip")}, profiles, 0)


def test_a_file_setting_that_names_a_folder_is_blamed_on_that_setting(tmp_path, profiles):
    w = fake_traces(tmp_path)
    (tmp_path / "traces" / "sub").mkdir()
    w["experts"]["good"]["file"] = "sub"
    with pytest.raises(ConfigError, match=r"workload.experts.good.file: '[^']*/sub' is a folder, not a file"):
        build_workload(w, profiles, 0)


def test_run_warns_and_writes_the_report_into_the_summary(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="mosaic.run.app"):
        out = run(trace_config(fake_traces(tmp_path)))
    report = out.summary["data_report"]
    assert report["missing_per_source"]["gaps"] == 2 and report["no_vote_per_source"]["mute"] == 6
    json.dumps(out.summary)   # summary.json must stay plain JSON
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("data quality (fake): 2 of 20 test questions dropped" in m for m in warnings)


def test_synthetic_run_has_no_report():
    out = run(config("workload=synth_small", "workload.n_queries=4"))
    assert out.summary["data_report"] is None and out.result.workload.data_report is None


def test_test_questions_also_in_the_calibration_file_are_held_out_and_counted(tmp_path, profiles):
    cfg = fake_traces(tmp_path)
    qdir = Path(cfg["questions_dir"])
    test, train = json.loads((qdir / "test.json").read_text()), json.loads((qdir / "train.json").read_text())
    (qdir / "train.json").write_text(json.dumps(train + test[5:7]))     # two test questions in both files
    w = build_workload(cfg, profiles, 0)
    r = w.data_report
    assert (r.answered_by_all, r.in_calibration, len(w.queries)) == (18, 2, 16)
    assert "2 of the 18 answered test questions are also in the calibration file, held out" in r.headline()
    (tmp_path / "clean").mkdir()
    assert build_workload(fake_traces(tmp_path / "clean"), profiles, 0).data_report.in_calibration == 0


def test_an_unknown_key_in_a_trace_source_is_refused(tmp_path, profiles):
    cfg = fake_traces(tmp_path)
    cfg["experts"]["good"]["fromat"] = "mosaic_json"       # a misspelt `format`
    with pytest.raises(ConfigError, match=r"workload\.experts\.good\.fromat: not a setting of a trace source"):
        build_workload(cfg, profiles, 0)


def test_empty_trace_question_and_calibration_files(tmp_path, profiles):
    cfg = fake_traces(tmp_path)
    train = Path(cfg["questions_dir"]) / "train.json"
    train.write_text("[]")
    with pytest.raises(ConfigError, match=r"workload\.calibration_questions: calibration \(train\) file .* is empty"):
        build_workload(cfg, profiles, 0)
    (Path(cfg["questions_dir"]) / "test.json").write_text("[]")
    with pytest.raises(ConfigError, match=r"workload\.questions: question file .*test\.json is empty"):
        build_workload(cfg, profiles, 0)


def test_traces_of_another_dataset_are_named_with_their_counts(tmp_path, profiles):
    cfg = fake_traces(tmp_path)
    write_zip(Path(cfg["traces_dir"]) / "agg.zip", [record(900 + i, f"Other {i}?") for i in range(5)])
    with pytest.raises(ConfigError, match=r"answered per trace file: good 20, gaps 18, mute 20, aggregator 0 of 20\); "
                                          r"a file with 0 is empty or belongs to another dataset"):
        build_workload(cfg, profiles, 0)


# ---------------------------------------------------------------- the real traces

@pytest.mark.slow
@needs_shared
def test_real_mmlu_pro_traces_report_what_they_contain():
    c = OmegaConf.to_container(config("workload=trace_mmlu_pro"), resolve=True)["workload"]
    r = build_workload(c, load_profiles(c["profiles"]), 0).data_report
    assert (r.questions, r.answered_by_all) == (2100, 2097)
    assert r.sources["Qwen1.5-7B-Chat"].texts_missing == 1
    assert r.sources["Mistral-7B-Instruct-v0.2"].answers_missing == 2237   # pred null: no "answer is (X)"
    assert all(s.duplicate_questions == 159 and s.conflicting_gold == 0 for s in r.sources.values())


@pytest.mark.parametrize("key", ["traces_dir", "questions_dir"])
def test_an_empty_folder_setting_is_blamed_on_itself(key, tmp_path):
    """Path('') is the working folder, which exists: without the check the first file read from it
    took the blame (workload.experts.<name>.file), not the empty setting. The other folder is one
    that exists, so the test needs no ../shared."""
    c = OmegaConf.to_container(config("workload=trace_mmlu_pro"), resolve=True)["workload"]
    c["traces_dir"] = c["questions_dir"] = str(tmp_path)
    c[key] = ""
    with pytest.raises(ConfigError, match=rf"workload\.{key}: the setting is empty"):
        build_workload(c, load_profiles(c["profiles"]), 0)
