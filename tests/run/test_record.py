"""mosaic record (mosaic/run/record.py): real experts' outputs written as mosaic_json trace files
that join the question file they came from. The reader and the checks here; the real engines'
recording in tests/mosaic/backends/vllm/test_vllm_engines.py."""
import json

import pytest

from mosaic.core.errors import ConfigError
from mosaic.run.record import main, plan_for, record
from mosaic.workload.sources.recorded_files import read_questions, read_trace
from mosaic.workload.types import Request

QS = [{"question": f"Q{i}? The options are: (A) a (B) b (C) c", "gold_answer": "ABC"[i % 3], "category": "x"}
      for i in range(4)]


def test_a_recorded_file_joins_its_question_file(tmp_path):
    (tmp_path / "q.json").write_text(json.dumps(QS))
    rows = [{"record_id": str(i), "question": q["question"], "gold_answer": q["gold_answer"], "category": "x",
             "n_options": 3, "model": "M", "answer": "B" if i else None, "output_tokens": 10 + i,
             "text": "The answer is (B)" if i else "", "censored": i == 3, "error": None if i != 2 else "boom"}
            for i, q in enumerate(QS)]
    (tmp_path / "M.json").write_text(json.dumps(rows))
    recs = read_trace(tmp_path / "M.json", "mosaic_json")
    assert set(recs) == set(read_questions(tmp_path / "q.json").keys)
    by_id = {r.record_id: r for r in recs.values()}
    assert by_id["1"].answer == "B" and by_id["1"].output_tokens == 11 and by_id["1"].gold == "B"
    assert by_id["0"].answer is None and by_id["0"].answer_issue == "missing" and by_id["0"].text_missing
    assert by_id["2"].answer is None and by_id["2"].text_missing          # failed on the engine
    assert by_id["3"].censored


@pytest.mark.parametrize("field, value, message", [
    ("n_options", 1, "field 'n_options' is 1"), ("output_tokens", -5, "field 'output_tokens'"),
    ("question", "", "field 'question' must be"),
])
def test_a_corrupt_recorded_file_is_one_line_naming_the_field(tmp_path, field, value, message):
    row = {"record_id": "0", "question": QS[0]["question"], "n_options": 3, "answer": "A", "output_tokens": 3}
    (tmp_path / "M.json").write_text(json.dumps([{**row, field: value}]))
    with pytest.raises(ConfigError, match=message):
        read_trace(tmp_path / "M.json", "mosaic_json")


def test_experts_are_dealt_over_the_workers_one_session_each():
    reqs = {f"{i}/{e}": Request(f"{i}/{e}", str(i), e, 5, "expert") for e in "ABC" for i in range(2)}
    plan = plan_for(["A", "B", "C"], reqs, 2)
    assert [[s.model for s in w.sessions] for w in plan.workers] == [["A", "C"], ["B"]]
    assert sorted(r for w in plan.workers for s in w.sessions for r in s.request_ids) == sorted(reqs)


def test_bad_arguments_are_refused_before_any_engine(tmp_path, capsys):
    (tmp_path / "q.json").write_text(json.dumps(QS))
    with pytest.raises(ConfigError, match="not in the model registry 'tiny'"):
        record(tmp_path / "q.json", ["Nope"], "tiny", tmp_path / "out")
    with pytest.raises(ConfigError, match="distinct model names"):
        record(tmp_path / "q.json", ["Qwen", "Qwen"], "tiny", tmp_path / "out")
    (tmp_path / "int.json").write_text(json.dumps([{"question": "How many?", "gold_answer": "42"}]))
    with pytest.raises(ConfigError, match="multiple-choice"):
        record(tmp_path / "int.json", ["Qwen"], "tiny", tmp_path / "out")
    assert main(["--questions", str(tmp_path / "missing.json"), "--experts", "Qwen", "--out", str(tmp_path)]) == 2
    assert "--questions" in capsys.readouterr().err
    (tmp_path / "bad.yaml").write_text("engine: [\n")   # refused after the out folder was made (left empty)
    with pytest.raises(ConfigError, match="not valid YAML"):
        record(tmp_path / "q.json", ["Qwen"], "tiny", tmp_path / "out", profiles=str(tmp_path / "bad.yaml"))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("text, match", [("a: [", "not valid YAML"), ("- a\n", "not a model registry"),
                                         ("models: [a]\n", "not a model registry")])
def test_a_registry_file_that_is_not_one_is_one_line(tmp_path, text, match):
    """A bad --models YAML was a yaml ParserError / AttributeError traceback."""
    from mosaic.core.errors import ConfigError
    from mosaic.run.record import registry

    f = tmp_path / "m.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=rf"--models {f}: {match}"):
        registry(str(f))


@pytest.mark.parametrize("errors, code, said", [(["boom", "boom"], 1, "error: all 2 requests failed on the engine"),
                                                (["boom", ""], 0, "warning: 1 requests failed on the engine")])
def test_every_request_failing_is_an_error_line_and_exit_1(tmp_path, capsys, monkeypatch, errors, code, said):
    """Exit 1 came with only a warning line before."""
    import mosaic.run.record as rec

    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "q.json").write_text(json.dumps(QS))

    def fake_record(*_a, **_k):
        p = out / "Qwen.json"
        p.write_text(json.dumps([{"error": e, "censored": False} for e in errors]))
        return {"Qwen": p}

    monkeypatch.setattr(rec, "record", fake_record)
    assert main(["--questions", str(tmp_path / "q.json"), "--experts", "Qwen", "--out", str(out)]) == code
    err = capsys.readouterr().err
    assert said in err and err.count("\n") == 1
    assert ("first error: boom" in err) == (code == 1)
