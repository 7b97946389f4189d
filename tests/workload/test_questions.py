"""Question-set loader and calibration-set router."""
import json
from collections import Counter

import numpy as np
import pytest

from mosaic.core.errors import ConfigError
from mosaic.workload.sources.questions import build, load_questions
from mosaic.workload.routing.skills import estimate_skills
from tests.helpers import SHARED_DATA, needs_shared

SHARED = SHARED_DATA / "questions"


def write_set(tmp_path, name, n, category=True):
    rng = np.random.default_rng(0)
    recs = []
    for i in range(n):
        rec = {"question": f"Question {i} about things? The options are: (A) x (B) y (C) z (D) w",
               "gold_answer": "ABCD"[rng.integers(4)]}
        if category:
            rec["category"] = ["math", "law"][i % 2]
        recs.append(rec)
    (tmp_path / f"{name}.json").write_text(json.dumps(recs))


@pytest.fixture
def qdir(tmp_path):
    write_set(tmp_path, "GPQA_test", 60)
    write_set(tmp_path, "GPQA_train", 80)
    return tmp_path


def cfg(qdir, **kw):
    return {"kind": "questions", "dataset": "gpqa", "questions_dir": str(qdir), "name": "t", **kw}


def test_builds_from_question_files(qdir, profiles):
    w = build(cfg(qdir), profiles, seed=0)
    assert len(w.queries) == 60
    assert {q.category for q in w.queries} == {"math", "law"}
    assert all(len(q.experts) == 3 for q in w.queries)
    assert all(q.prompt_tokens > 40 for q in w.queries)
    assert len(w.outcomes) == 60 * 4  # 3 experts + aggregator per query


def test_same_seed_same_routing(qdir, profiles):
    a, b = build(cfg(qdir), profiles, seed=4), build(cfg(qdir), profiles, seed=4)
    assert [q.experts for q in a.queries] == [q.experts for q in b.queries]
    c = build(cfg(qdir), profiles, seed=5)
    assert [q.experts for q in a.queries] != [q.experts for q in c.queries]


def test_calibration_is_drawn_once_per_dataset_not_per_run(qdir, profiles):
    # Symbolic-MoE profiles its experts on the calibration set once: every run seed sees the same
    # calibration statistics; calibration_seed picks another draw.
    a, b = build(cfg(qdir), profiles, seed=4), build(cfg(qdir), profiles, seed=5)
    assert a.calibration == b.calibration
    assert a.outcomes != b.outcomes
    assert build(cfg(qdir, calibration_seed=1), profiles, seed=4).calibration != a.calibration


@pytest.mark.parametrize("content, match", [
    ("{not json", "not a readable JSON file"),
    ('{"question": "q"}', "expected a JSON list"),
    ('[{"question": "q? The options are: (A) a (B) b"}]', "item 0 lacks a non-empty string field 'gold_answer'"),
    ('[{"question": "", "gold_answer": "A"}]', "field 'question'"),
    ('[{"question": "\u200b\u200b", "gold_answer": "A"}]', "field 'question'"),   # only zero-width spaces
    ('[{"question": "q? The options are: (A) a (B) b", "gold_answer": "H"}]', "outside its options"),
    # Python's json kept the last of two keys (gold B) and recursed to a RecursionError traceback
    ('[{"question": "q? The options are: (A) a (B) b", "gold_answer": "A", "gold_answer": "B"}]',
     "key 'gold_answer' appears twice"),
    ("[" * 100000 + "]" * 100000, "nested too deeply"),
])
def test_malformed_file_names_path_and_field(tmp_path, profiles, content, match):
    write_set(tmp_path, "GPQA_train", 10)
    (tmp_path / "GPQA_test.json").write_text(content)
    with pytest.raises(ConfigError, match=match) as e:
        build(cfg(tmp_path), profiles, seed=0)
    assert "GPQA_test.json" in str(e.value)


def test_missing_directory_and_file(tmp_path, profiles):
    with pytest.raises(ConfigError, match="workload.questions_dir"):
        build(cfg(tmp_path / "nope"), profiles, seed=0)
    with pytest.raises(ConfigError, match="GPQA_test.json' does not exist"):
        load_questions(tmp_path / "GPQA_test.json")
    with pytest.raises(ConfigError, match="workload.dataset"):
        build({**cfg(tmp_path), "dataset": "aime"}, profiles, seed=0)


def test_skill_estimates_shrink_to_overall():
    cats = ["a"] * 2 + ["b"] * 100
    correct = np.array([[1, 0]] * 2 + [[0, 1]] * 100, dtype=float)
    skill = estimate_skills(cats, correct, ["a", "b", "c"], prior_strength=5.0)
    # Two lucky answers in "a" do not make expert 0 the better one there.
    assert skill[0, 0] < 0.5 < skill[0, 1]
    assert skill[1, 1] > 0.9 > 0.1 > skill[1, 0]
    assert skill[2, 0] == pytest.approx((2 + 1) / (102 + 2))  # unseen category: overall rate


def test_skill_estimation_rejects_expert_without_answers():
    with pytest.raises(ConfigError, match="no calibration answers"):
        estimate_skills(["a"], np.array([[1.0, np.nan]]), ["a"])


@needs_shared
def test_real_medmcqa_routing_is_skewed_and_deterministic(profiles):
    c = {"kind": "questions", "dataset": "medmcqa", "questions_dir": str(SHARED), "name": "medmcqa"}
    w = build(c, profiles, seed=0)
    assert len(w.queries) == 4183 and len(w.expert_requests()) == 12549
    demand = Counter(m for q in w.queries for m in q.experts)
    assert max(demand.values()) / min(demand.values()) > 5
    assert [q.experts for q in build(c, profiles, seed=0).queries] == [q.experts for q in w.queries]


# ---------------------------------------------------------------- accuracy from the profiles

def with_tables(profiles, tables):
    from dataclasses import replace
    from mosaic.profiles import ProfileSet
    return ProfileSet(profiles.engine, {n: replace(m, accuracy=tables.get(n, {})) for n, m in profiles.models.items()})


EXPERTS = ("LlamaR1", "QwenR1", "Gemma", "Exaone", "GLM", "Qwen")


def test_profile_accuracy_table_drives_routing(qdir, profiles):
    # Exaone is far better than the rest on law and far worse on math; the others are flat.
    tables = {e: {"gpqa": {"all": 0.45}} for e in EXPERTS}
    tables["Exaone"] = {"gpqa": {"all": 0.5, "law": 0.95, "math": 0.05}}
    w = build(cfg(qdir), with_tables(profiles, tables), seed=0)
    share = {c: np.mean(["Exaone" in q.experts for q in w.queries if q.category == c]) for c in ("law", "math")}
    # Math still recruits Exaone now and then: under Symbolic-MoE's recruiter its higher overall
    # (global) strength weighs in wherever no expert has a positive net score, as on math here.
    assert share["law"] > 0.9 and share["math"] < share["law"] / 2
    # The preset table (profiles without accuracy) does not single Exaone out like that.
    w0 = build(cfg(qdir), profiles, seed=0)
    assert np.mean(["Exaone" in q.experts for q in w0.queries if q.category == "law"]) < 0.9


def test_true_accuracy_reads_the_profile_table(profiles):
    from mosaic.workload.sources.questions import true_accuracy
    tables = {e: {"mmlu_pro": {"all": 0.4 + 0.01 * i, "law": 0.2}} for i, e in enumerate(EXPERTS)}
    tables["Qwen"] = {"mmlu_pro": {"law": 0.7}}         # no "all": falls back to the preset's level
    acc = true_accuracy("mmlu_pro", ["law", "math", "all"], 0.4, with_tables(profiles, tables))
    assert acc[0].tolist() == [0.2] * 5 + [0.7]
    assert acc[1].tolist() == pytest.approx([0.40, 0.41, 0.42, 0.43, 0.44, 0.56])   # Qwen: PRESETS 0.56
    assert acc[2].tolist() == acc[1].tolist()
    # Without a table for every expert (here one lacks it), the preset's seeded table is used.
    del tables["GLM"]
    partial = true_accuracy("mmlu_pro", ["law", "math"], 0.4, with_tables(profiles, tables))
    assert np.array_equal(partial, true_accuracy("mmlu_pro", ["law", "math"], 0.4))
    assert np.array_equal(true_accuracy("mmlu_pro", ["law"], 0.4, profiles), true_accuracy("mmlu_pro", ["law"], 0.4))


def test_aggregator_skill_follows_the_profile_table(profiles):
    from mosaic.workload.sources.questions import _aggregator_logits, true_accuracy
    from scipy.special import logit
    tables = {e: {"gpqa": {"all": 0.4, "law": 0.4}} for e in EXPERTS}
    tables["QwenR1"] = {"gpqa": {"all": 0.4, "law": 0.8, "math": 0.4}}   # the gpqa aggregator
    ps = with_tables(profiles, tables)
    acc = true_accuracy("gpqa", ["law", "math"], 0.4, ps)
    agg = _aggregator_logits("gpqa", acc, ps)
    assert agg[0] - agg[1] == pytest.approx(logit(0.8) - logit(0.4))
    assert agg[1] == pytest.approx(logit(0.48))          # at its overall level: the preset aggregator's


# ---------------------------------------------------------------- integer answers (AIME)

def write_integer_set(tmp_path, name, golds):
    recs = [{"question": f"Find the number {i}.", "gold_answer": g} for i, g in enumerate(golds)]
    (tmp_path / f"{name}.json").write_text(json.dumps(recs))


def test_integer_answer_set_builds_and_rejects_letters(tmp_path, profiles):
    write_integer_set(tmp_path, "AIME24_test", [str(i * 37 % 1000) for i in range(20)])
    write_integer_set(tmp_path, "AIME24_train", [str(i) for i in range(39)] + ["080 or 081 (both were accepted)"])
    c = {"kind": "questions", "dataset": "aime24", "questions_dir": str(tmp_path), "name": "t"}
    w = build(c, profiles, seed=0)
    assert [q.gold for q in w.queries[:3]] == ["0", "37", "74"]
    assert all(o.answer.isdigit() for o in w.outcomes.values())
    bad = tmp_path / "bad"   # a fresh path: question files are cached per (path, mtime)
    bad.mkdir()
    write_integer_set(bad, "AIME24_test", ["B"])
    write_integer_set(bad, "AIME24_train", ["1", "2"])
    with pytest.raises(ConfigError, match="item 0 has gold_answer 'B'; aime24 answers are integers 0-999"):
        build({**c, "questions_dir": str(bad)}, profiles, seed=0)
