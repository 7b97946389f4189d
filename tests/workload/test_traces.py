"""Trace-driven workloads: readers on tiny fake files, matching, routing, and the real data if present."""
import json
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from mosaic.core.errors import ConfigError
from mosaic.workload.sources import recorded as traces
from mosaic.workload.sources.recorded_files import normalise, question_key, read_medagents_json, read_mmlu_pro_zip, read_trace
from mosaic.workload.sources.recorded import build
from mosaic.workload.types import aggregator_request_id, expert_request_id, expert_slots
from tests.helpers import needs_shared

LETTERS = "ABCD"


def question_text(stem: str, options) -> str:
    return f"{stem} The options are: " + " ".join(f"({LETTERS[i]}) {o}" for i, o in enumerate(options)) + "."


def mmlu_record(qid, stem, options, gold, pred, text, category="math"):
    return {"question_id": qid, "question": stem, "options": options, "answer": gold,
            "answer_index": LETTERS.index(gold), "category": category, "src": "fake", "pred": pred,
            "generated_text": text, "cot_content": ""}


def write_zip(path: Path, records) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("model_outputs.json", json.dumps(records))
    return path


def medagents_record(idx, stem, options, gold, pred, tokens, as_string=False):
    usage = {"prompt_tokens": 50, "completion_tokens": tokens}
    return {"question": stem, "realidx": idx, "options": dict(zip(LETTERS, options)), "answer_idx": gold,
            "answer": options[LETTERS.index(gold)], "predicted_answer": pred,
            "token_usage": str(usage) if as_string else usage, "time_elapsed": 1.0}


# ---------------------------------------------------------------- readers

def test_mmlu_pro_reader_lengths_answers_and_censoring(tmp_path):
    recs = [mmlu_record(1, "What is 1+1?", ["1", "2", "3", "4"], "B", "B", "Add them. The answer is (B).\n\n"),
            mmlu_record(2, "What is 2+2?", ["4", "5", "6", "7"], "A", None, "x" * 401),   # cut off mid-word
            mmlu_record(3, "Odd pred?", ["a", "b", "c", "d"], "C", "Z", "I am not sure.")]
    out = {r.record_id: r for r in read_mmlu_pro_zip(write_zip(tmp_path / "m.zip", recs))}
    a, b, c = out["00000001"], out["00000002"], out["00000003"]
    assert (a.answer, a.gold, a.output_tokens, a.censored) == ("B", "B", 8, False)  # 30 chars / 4
    assert (b.answer, b.output_tokens, b.censored) == (None, 101, True)
    assert c.answer is None and not c.censored   # an invalid letter is no vote; a full stop is a natural end
    assert a.key == normalise(question_text("What is 1+1?", ["1", "2", "3", "4"]))


def test_medagents_reader_accepts_dict_and_string_token_usage(tmp_path):
    recs = [medagents_record("q1", "Which nerve?", ["x", "y", "z", "w"], "A", "A", 300),
            medagents_record("q2", "Which bone?", ["x", "y", "z", "w"], "B", "C", 2048, as_string=True),
            medagents_record("q3", "Which drug?", ["x", "y", "z", "w"], "D", None, 5)]
    path = tmp_path / "r.json"
    path.write_text(json.dumps(recs))
    out = {r.record_id: r for r in read_medagents_json(path)}
    assert (out["q1"].output_tokens, out["q1"].answer, out["q1"].censored) == (300, "A", False)
    assert (out["q2"].output_tokens, out["q2"].answer, out["q2"].censored) == (2048, "C", True)  # a power-of-2 cap
    assert out["q3"].answer is None and out["q3"].gold == "D"


def test_malformed_files_name_path_and_field(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("[{not json")
    with pytest.raises(ConfigError, match=f"{bad}.*not valid JSON"):
        read_medagents_json(bad)
    bad.write_text('[{"output_tokens": 1999, "output_tokens": 5}]')   # was: the last one, silently
    with pytest.raises(ConfigError, match=f"{bad}: not valid JSON \\(key 'output_tokens' appears twice"):
        read_medagents_json(bad)
    bad.write_text("[" * 100000 + "]" * 100000)                      # was: a RecursionError traceback
    with pytest.raises(ConfigError, match=f"{bad}: not valid JSON \\(nested too deeply"):
        read_medagents_json(bad)
    rec = medagents_record("q1", "Q?", ["a", "b", "c", "d"], "A", "A", 10)
    del rec["token_usage"]
    missing = tmp_path / "missing.json"
    missing.write_text(json.dumps([rec]))
    with pytest.raises(ConfigError, match=f"{missing}: record 0 has no field 'token_usage'"):
        read_medagents_json(missing)
    rec = mmlu_record(1, "Q?", ["a", "b"], "A", "A", "t")
    del rec["generated_text"]
    z = write_zip(tmp_path / "m.zip", [rec])
    with pytest.raises(ConfigError, match=f"{z}: record 0 has no field 'generated_text'"):
        read_mmlu_pro_zip(z)
    notzip = tmp_path / "n.zip"
    notzip.write_text("plain")
    with pytest.raises(ConfigError, match=f"{notzip}: not a readable zip"):
        read_mmlu_pro_zip(notzip)


def test_question_file_text_matches_trace_key_despite_spacing_and_punctuation():
    stem, opts = "Which is  larger?", ["3,000 kg", "2 t"]
    file_text = "Which is larger? The options are: (A) 3,000 kg (B) 2 t.."
    assert normalise(file_text) == question_key(stem, opts)
    assert normalise(file_text) != question_key(stem, ["2 t", "3,000 kg"])   # options are part of the key


# ---------------------------------------------------------------- building on a fake dataset

def fake_dataset(tmp_path: Path, n_test=60, n_cal=40):
    """Three experts: 'good' always right; 'fair' and 'poor' right on some questions. Lengths vary."""
    rng = np.random.default_rng(0)
    qdir, tdir = tmp_path / "questions", tmp_path / "traces"
    qdir.mkdir()
    tdir.mkdir()
    stems = [f"Question number {i}?" for i in range(n_test + n_cal)]
    opts = [[f"opt{i}{j}" for j in range(4)] for i in range(len(stems))]
    gold = [LETTERS[i % 4] for i in range(len(stems))]
    cats = ["math" if i % 2 else "law" for i in range(len(stems))]
    rows = [{"question": question_text(s, o), "gold_answer": g, "category": c}
            for s, o, g, c in zip(stems, opts, gold, cats)]
    (qdir / "test.json").write_text(json.dumps(rows[:n_test]))
    (qdir / "train.json").write_text(json.dumps(rows[n_test:]))
    hit = {"good": 1.0, "fair": 0.6, "poor": 0.3, "agg": 0.8}
    for model, p in hit.items():
        recs = []
        for i, (s, o, g, c) in enumerate(zip(stems, opts, gold, cats)):
            right = rng.random() < p
            pred = g if right else LETTERS[(LETTERS.index(g) + 1) % 4]
            recs.append(mmlu_record(i, s, o, g, pred, "w" * int(rng.integers(20, 800)) + " The answer is (X).", c))
        write_zip(tdir / f"{model}.zip", recs)
    return {"name": "fake", "kind": "trace", "dataset": "fake", "questions_dir": str(qdir),
            "traces_dir": str(tdir), "questions": "test.json", "calibration_questions": "train.json",
            "k": 2, "routing_noise": 0.15, "prior_strength": 5.0,
            "experts": {"good": {"file": "good.zip", "format": "mmlu_pro_zip", "profile": "Qwen"},
                        "fair": {"file": "fair.zip", "format": "mmlu_pro_zip", "profile": "Gemma"},
                        "poor": {"file": "poor.zip", "format": "mmlu_pro_zip", "profile": "GLM",
                                 "lengths": "profile"}},
            "aggregator": {"file": "agg.zip", "format": "mmlu_pro_zip", "profile": "LlamaR1"}}


def test_build_replays_real_answers_and_lengths(tmp_path, profiles):
    cfg = fake_dataset(tmp_path)
    w = build(cfg, profiles, seed=0)
    assert len(w.queries) == 60 and w.expert_models == ("Qwen", "Gemma", "GLM") and w.aggregator == "LlamaR1"
    assert [q.id for q in w.queries[:2]] == ["fake-00000", "fake-00001"]
    good = read_trace(Path(cfg["traces_dir"]) / "good.zip", "mmlu_pro_zip")
    for q in w.queries:
        assert len(q.experts) == 2 and q.difficulty == 0.0
        for m in q.experts:  # every routed request has an outcome
            assert expert_request_id(q.id, m) in w.outcomes
        assert aggregator_request_id(q.id) in w.outcomes
        if "Qwen" in q.experts:
            o = w.outcomes[expert_request_id(q.id, "Qwen")]
            rec = good[normalise(question_text(f"Question number {int(q.id[-5:])}?",
                                               [f"opt{int(q.id[-5:])}{j}" for j in range(4)]))]
            assert (o.answer, o.output_tokens) == (q.gold, rec.output_tokens)
    assert len(w.outcomes) == 3 * 60


def test_routing_is_seeded_and_follows_calibrated_skill(tmp_path, profiles):
    cfg = fake_dataset(tmp_path, n_test=300)
    # The without-replacement router, with enough noise that every expert gets some queries.
    cfg.update(k=1, routing_noise=3.0, replacement=False)
    a, b = build(cfg, profiles, seed=3), build(cfg, profiles, seed=3)
    assert a == b
    demand = Counter(q.experts[0] for q in a.queries)
    assert demand["Qwen"] > demand["Gemma"] > demand["GLM"] > 0   # the better calibrated, the more chosen
    assert build(cfg, profiles, seed=4) != a


def test_recruiter_repeats_replay_the_one_recorded_output(tmp_path, profiles):
    cfg = fake_dataset(tmp_path, n_test=300)
    cfg.update(k=3)
    w = build(cfg, profiles, seed=0)
    demand = Counter(m for q in w.queries for m in q.experts)
    assert demand["Qwen"] > demand["Gemma"]           # 'good' (always right) is recruited most
    assert demand["GLM"] == 0                         # 'poor' (30%) has a negative net score: never a candidate
    repeated = [q for q in w.queries if len(set(q.experts)) < len(q.experts)]
    assert repeated
    for q in repeated:
        for m, s in expert_slots(q.experts):
            if s > 1:   # a trace holds one output per (model, question): the repeat replays it
                assert w.outcomes[expert_request_id(q.id, m, s)] == w.outcomes[expert_request_id(q.id, m)]
    ids = [r.id for r in w.expert_requests()]
    assert len(ids) == len(set(ids)) == 3 * 300


def test_resampled_repeats_are_fresh_draws_at_the_calibrated_accuracy(tmp_path, profiles):
    cfg = fake_dataset(tmp_path, n_test=300)
    del cfg["experts"]["good"]   # 'fair' (60% right) and 'poor' (30%, never a candidate): fair twice
    cfg.update(k=2, repeat_sample="resample")
    w = build(cfg, profiles, seed=0)
    assert w == build(cfg, profiles, seed=0)
    gold = {q.id: q.gold for q in w.queries}
    pairs = [(w.outcomes[expert_request_id(q.id, "Gemma")].answer, w.outcomes[expert_request_id(q.id, "Gemma", 2)].answer,
              gold[q.id]) for q in w.queries if q.experts == ("Gemma", "Gemma")]
    assert len(pairs) > 100
    assert 0.45 < np.mean([b == g for a, b, g in pairs]) < 0.75   # at fair's calibrated level
    assert 0.2 < np.mean([a != b for a, b, g in pairs]) < 0.8      # not a copy of the first sample...
    replay = build({**cfg, "repeat_sample": "replay"}, profiles, seed=0)
    assert [q.experts for q in replay.queries] == [q.experts for q in w.queries]   # ...routing unchanged
    with pytest.raises(ConfigError, match="workload.repeat_sample: 'twice' is not one of"):
        build({**cfg, "repeat_sample": "twice"}, profiles, seed=0)


def test_trace_workload_refuses_table3_routing(tmp_path, profiles):
    cfg = fake_dataset(tmp_path)
    cfg.update(routing="paper_table3")
    with pytest.raises(ConfigError, match="workload.routing=paper_table3: Table 3 covers"):
        build(cfg, profiles, seed=0)


def test_held_out_calibration_split_is_excluded(tmp_path, profiles):
    cfg = fake_dataset(tmp_path)
    cfg.update(calibration_questions=None, calibration_size=20, calibration_seed=1)
    w = build(cfg, profiles, seed=0)
    assert len(w.queries) == 40
    assert w == build(cfg, profiles, seed=0)


@pytest.mark.parametrize("change, match", [
    (lambda c: c["experts"]["good"].update(file="nope.zip"), "workload.experts.good.file: .*nope.zip' does not exist"),
    (lambda c: c["experts"]["good"].update(format="csv"), "workload.experts.good.format: unknown format 'csv'"),
    (lambda c: c["experts"]["fair"].update(profile="Qwen"), "two experts share a profile"),
    (lambda c: c.update(k=4), "workload.k must be between 1 and the 3"),
    (lambda c: c["experts"]["good"].update(profile="NoSuchModel"), "workload.experts.good.profile: no model 'NoSuchModel' in the profiles"),
])
def test_bad_config_is_a_clear_error(tmp_path, profiles, change, match):
    cfg = fake_dataset(tmp_path)
    change(cfg)
    with pytest.raises(ConfigError, match=match):
        build(cfg, profiles, seed=0)


def _mosaic_json(cfg, name, change=lambda i, rec: None):
    """Expert `name`'s trace rewritten as a mosaic_json file (mosaic record's format)."""
    qs = json.loads((Path(cfg["questions_dir"]) / "test.json").read_text())
    rows = []
    for i, q in enumerate(qs):
        rec = {"record_id": i, "question": q["question"], "n_options": 4, "answer": q["gold_answer"],
               "gold_answer": q["gold_answer"], "output_tokens": 50 + i, "censored": False, "error": None,
               "text": "The answer is (X)."}
        change(i, rec)
        rows.append(rec)
    path = Path(cfg["traces_dir"]) / f"{name}.json"
    path.write_text(json.dumps(rows))
    cfg["experts"][name].update(file=path.name, format="mosaic_json")
    cfg.pop("calibration_questions")
    cfg["calibration_size"] = 20
    return path


def test_trace_questions_are_checked_as_the_questions_workload_checks_them(tmp_path, profiles):
    """A gold that is none of the question's options (never scored right) ran with exit 0; a null
    category became the category 'None'."""
    cfg = fake_dataset(tmp_path)
    qfile = Path(cfg["questions_dir"]) / "test.json"
    rows = json.loads(qfile.read_text())
    rows[3]["category"] = None
    qfile.write_text(json.dumps(rows))
    w = build(cfg, profiles, seed=0)
    assert w.queries[3].category == "all" and "None" not in {q.category for q in w.queries}
    for gold in ("E", "42"):
        rows[5]["gold_answer"] = gold
        qfile.write_text(json.dumps(rows))
        with pytest.raises(ConfigError, match=rf"workload.questions: {qfile}: item 5 has gold_answer '{gold}' "
                                              r"outside its options \(4 found"):
            build(cfg, profiles, seed=0)


@pytest.mark.parametrize("change, match", [
    # 16 options on a question listing 4: its answer "M" counted as a vote
    (lambda i, r: r.update(n_options=16, answer="M") if i == 2 else None, r"record 2 has 16 options where its question"),
    # bool("false") is True: every record read as censored / failed
    (lambda i, r: r.update(censored="false"), r"record 0 field 'censored' is the string 'false', not true or false"),
    (lambda i, r: r.update(error="false"), r"record 0 field 'error' is the string 'false'; it holds the engine's error message"),
    (lambda i, r: r.update(error=True), r"record 0 field 'error' is true .a boolean.; it holds"),
    (lambda i, r: r.update(error="False"), r"record 0 field 'error' is the string 'False'"),
    (lambda i, r: r.update(error=0), r"record 0 field 'error' is 0"),
    # mosaic record writes the question's own option count: 2 of 4 dropped its C/D votes silently
    (lambda i, r: r.update(n_options=2) if i == 4 else None, r"record 4 has 2 options where its question"),
])
def test_a_recorded_trace_with_options_or_flags_it_cannot_have_is_refused(tmp_path, profiles, change, match):
    cfg = fake_dataset(tmp_path)
    path = _mosaic_json(cfg, "good", change)
    with pytest.raises(ConfigError, match=rf"workload.experts.good: .*{path.name}.*{match}"):
        build(cfg, profiles, seed=0)


def test_a_question_recorded_twice_with_different_answers_is_reported(tmp_path, profiles):
    cfg = fake_dataset(tmp_path)
    path = _mosaic_json(cfg, "good")
    rows = json.loads(path.read_text())
    # ids 9 and 10 hold one question: 9 is kept (compared as numbers: as text, "10" < "9")
    rows.append({**rows[9], "record_id": 10, "answer": "D" if rows[9]["answer"] != "D" else "C"})
    rows[10]["record_id"] = 99
    path.write_text(json.dumps(rows))
    w = build(cfg, profiles, seed=0)
    assert any("conflicting answers (the lowest record id's kept) in the files: good 1" in p
               for p in w.data_report.problems())
    q9 = next(q for q in w.queries if q.id.endswith("00009"))
    if "Qwen" in q9.experts:
        assert w.outcomes[expert_request_id(q9.id, "Qwen")].answer == rows[9]["answer"]


# ---------------------------------------------------------------- real data

@pytest.mark.slow
@needs_shared
def test_real_mmlu_pro_trace_workload():
    import yaml

    from mosaic.profiles import load_profiles
    cfg = yaml.safe_load((Path(__file__).resolve().parents[2] / "mosaic/conf/workload/trace_mmlu_pro.yaml").read_text())
    w = traces.build(cfg, load_profiles("paper_a100"), seed=0)
    assert 2000 <= len(w.queries) <= 2100 and len(w.expert_requests()) == 3 * len(w.queries)
    assert len({q.category for q in w.queries}) == 14
    top = Counter(Counter(w.outcomes[expert_request_id(q.id, m, s)].answer
                          for m, s in expert_slots(q.experts)).most_common(1)[0][1] for q in w.queries)
    assert top[3] > 0 and top[1] + top[2] > 0          # experts agree sometimes, not always
    lens = [o.output_tokens for o in w.outcomes.values()]
    assert len(set(lens)) > 100


@needs_shared
def test_a_question_file_of_another_dataset_is_named_not_the_calibration_split():
    from mosaic.run.app import run
    from tests.helpers import config

    with pytest.raises(ConfigError, match="no question of .*GPQA_test.json is answered by every expert") as e:
        run(config("workload=trace_medmcqa", "workload.questions=GPQA_test.json"))
    assert "calibration_size" not in str(e.value)
