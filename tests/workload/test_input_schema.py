"""Question and trace files are checked record by record (mosaic/workload/sources/question_files.py,
recorded_files.py): a bad record is one ConfigError line naming the file, the record and the field;
a token count outside [0, 2^21] is refused, never clipped; a record that reads holds the file's values."""
import json
import math
import re
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mosaic.core.errors import ConfigError
from mosaic.workload.sources.question_files import load_questions
from mosaic.workload.sources.data_quality import DataReport
from mosaic.workload.sources.recorded_files import MAX_OUTPUT_TOKENS, read_medagents_json, read_mmlu_pro_zip, trace_stats
from tests.helpers import SHARED_DATA, needs_shared

OPTIONS = "The options are: (A) a (B) b (C) c (D) d"


def _questions(tmp_path: Path, records, name="q.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(records))
    return path


def _one_line(e) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


# ---------------------------------------------------------------- question files

def test_valid_question_records_read_as_written(tmp_path):
    recs = [{"question": f"Q? {OPTIONS}", "gold_answer": "b", "category": "law", "source": "x"},
            {"question": "How many?", "gold_answer": "080 or 081 (both were accepted)"},
            {"question": "Which?", "gold_answer": "P", "category": None}]
    assert load_questions(_questions(tmp_path, recs)) == tuple(recs)


@pytest.mark.parametrize("record, match", [
    ({"gold_answer": "A"}, r"item 1 lacks a non-empty string field 'question'"),
    ({"question": "   ", "gold_answer": "A"}, r"item 1 lacks a non-empty string field 'question'"),
    ({"question": 42, "gold_answer": "A"}, r"item 1 lacks a non-empty string field 'question'"),
    ({"question": "Q?"}, r"item 1 lacks a non-empty string field 'gold_answer'"),
    ({"question": "Q?", "gold_answer": 3}, r"item 1 field 'gold_answer' is the number 3; write it as a string"),
    ({"question": "Q?", "gold_answer": "banana"}, r"item 1 field 'gold_answer' is the string 'banana'; expected one option letter"),
    ({"question": "Q?", "gold_answer": "Z"}, r"item 1 field 'gold_answer' is the string 'Z'"),
    ({"question": "Q?", "gold_answer": "-3"}, r"item 1 field 'gold_answer'"),
    ({"question": "Q?", "gold_answer": "A", "category": 5}, r"item 1 field 'category' is 5; expected a non-empty string or null"),
    ({"question": "Q?", "gold_answer": "A", "category": ""}, r"item 1 field 'category'"),
    (["Q?", "A"], r"item 1 is not an object"),
])
def test_bad_question_record_names_file_item_and_field(tmp_path, record, match):
    path = _questions(tmp_path, [{"question": "Fine?", "gold_answer": "A"}, record])
    with pytest.raises(ConfigError) as e:
        load_questions(path)
    msg = _one_line(e)
    assert str(path) in msg and re.search(match, msg), msg


@needs_shared
def test_shared_question_files_all_pass():
    for path in sorted((SHARED_DATA / "questions").glob("*.json")):
        assert load_questions(path)


# ---------------------------------------------------------------- trace files

LETTERS = "ABCD"


def medagents(tokens, i=0):
    return {"question": f"Q{i}?", "realidx": f"r{i}", "options": dict(zip(LETTERS, "abcd")), "answer_idx": "A",
            "answer": "a", "predicted_answer": "A", "token_usage": {"prompt_tokens": 5, "completion_tokens": tokens}}


def _medagents_file(tmp_path: Path, tokens) -> Path:
    path = tmp_path / "m.json"
    path.write_text(json.dumps([medagents(7, 0), medagents(tokens, 1)]))
    return path


@pytest.mark.parametrize("tokens, match", [
    (-500, r"is -500, not a token count in \[0, 2097152\]"),
    (10**9, r"is 1000000000, not a token count"),
    (1e9, r"is 1000000000, not a token count"),
    ("300", r": expected an integer, got the string '300'"),
    (300.5, r": expected an integer, got 300\.5"),
    (True, r": expected an integer, got true"),
    (None, r": expected an integer, got null"),
])
def test_bad_token_count_is_refused_never_clipped(tmp_path, tokens, match):
    path = _medagents_file(tmp_path, tokens)
    with pytest.raises(ConfigError) as e:
        read_medagents_json(path)
    msg = _one_line(e)
    assert f"{path}: record 1 field 'token_usage.completion_tokens'" in msg and re.search(match, msg), msg


@pytest.mark.parametrize("tokens, read", [(300, 300), (300.0, 300), (0, 1), (MAX_OUTPUT_TOKENS, MAX_OUTPUT_TOKENS)])
def test_token_counts_in_range_read_as_written(tmp_path, tokens, read):
    """0 (an empty completion) replays as 1 token: an engine emits at least one."""
    recs = read_medagents_json(_medagents_file(tmp_path, tokens))
    assert [r.output_tokens for r in recs] == [7, read]
    assert [r.zero_tokens for r in recs] == [False, tokens == 0]


def test_empty_completions_are_counted_in_the_file_report(tmp_path):
    """Replaying a 0-token completion as 1 token changes the trace: the report says how often."""
    path = tmp_path / "m.json"
    path.write_text(json.dumps([medagents(0, 0), medagents(5, 1), medagents(0, 2)]))
    s = trace_stats(path, "medagents_json")
    assert s.zero_token_counts == 2
    report = DataReport(questions=3, answered_by_all=3, missing_per_source={"m": 0}, no_vote_per_source={"m": 0},
                        sources={"m": s})
    assert "token counts of 0, replayed as 1 in the files: m 2" in report.headline()


def test_absurdly_long_output_text_is_refused(tmp_path):
    rec = {"question_id": 1, "question": "Q?", "options": list("abcd"), "answer": "A", "answer_index": 0,
           "category": "math", "src": "x", "pred": "A", "generated_text": "w" * (4 * MAX_OUTPUT_TOKENS + 8),
           "cot_content": ""}
    path = tmp_path / "m.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("m.json", json.dumps([rec]))
    with pytest.raises(ConfigError) as e:
        read_mmlu_pro_zip(path)
    assert re.search(r"record 0 field 'generated_text' holds \d+ characters, about 2097154 tokens", _one_line(e))


# ---------------------------------------------------------------- fuzz: corrupt a question or trace record

FIELD_VALUES = [None, 0, -500, 1e9, 10**30, math.nan, "", " ", "A", "Z", "12", "banana", True, [], {}, 2.5]


@settings(max_examples=80, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.sampled_from(["question", "gold_answer", "category"]), st.sampled_from(FIELD_VALUES + ["delete"]),
       st.integers(0, 2))
def test_corrupted_question_record_reads_as_written_or_names_item_and_field(tmp_path, field, value, item):
    recs = [{"question": f"Q{i}? {OPTIONS}", "gold_answer": "ABC"[i], "category": "law"} for i in range(3)]
    if value == "delete":
        del recs[item][field]
    else:
        recs[item][field] = value
    path = _questions(tmp_path, recs, f"q-{field}-{item}.json")
    try:
        got = load_questions(path)
    except ConfigError as e:
        msg = str(e)
        assert "\n" not in msg and str(path) in msg and f"item {item} " in msg and f"'{field}'" in msg, msg
        return
    assert got == tuple(json.loads(path.read_text()))   # nothing altered on the way in


@settings(max_examples=80, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.sampled_from(FIELD_VALUES + [0, 7, 4096, 2**21, 2**21 + 1, -1, 1.0, 300.25]), st.integers(0, 2),
       st.booleans())
def test_corrupted_trace_token_count_reads_as_written_or_names_record_and_field(tmp_path, value, item, as_string):
    recs = [medagents(10 + i, i) for i in range(3)]
    recs[item]["token_usage"]["completion_tokens"] = value
    if as_string:   # some releases store the usage dict's repr
        recs[item]["token_usage"] = str(recs[item]["token_usage"])
    path = tmp_path / f"t-{item}.json"
    try:
        path.write_text(json.dumps(recs, allow_nan=True))
        got = read_medagents_json(path)
    except ConfigError as e:
        msg = str(e)
        assert "\n" not in msg and str(path) in msg and f"record {item} " in msg and "token_usage" in msg, msg
        return
    # Read: the value was a whole number in [0, 2^21], and it is read as it stands (0 as one token).
    assert isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer()
    assert 0 <= value <= MAX_OUTPUT_TOKENS and got[item].output_tokens == max(1, int(value))
    assert [r.output_tokens for i, r in enumerate(got) if i != item] == [10 + i for i in range(3) if i != item]
