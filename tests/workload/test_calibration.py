"""Calibration statistics per workload kind: measured on the calibration (train) split only."""
import json

import numpy as np
import pytest

from mosaic.profiles import load_profiles
from mosaic.workload.build import build_workload
from mosaic.workload.calibration import CALIBRATION_SIZES, length_stats
from mosaic.workload.sources.recorded_files import read_questions, read_trace
from mosaic.workload.types import Workload
from tests.helpers import SHARED_DATA as DATA, needs_shared


@pytest.fixture(scope="module")
def paper():
    return load_profiles("paper_a100")


@needs_shared
def test_calibration_sizes_are_the_train_files():
    for ds, name in {"mmlu_pro": "MMLU_Pro", "medmcqa": "MedMCQA", "gpqa": "GPQA", "aime24": "AIME24"}.items():
        assert CALIBRATION_SIZES[ds] == len(json.loads((DATA / "questions" / f"{name}_train.json").read_text()))


@pytest.mark.parametrize("preset", ["mmlu_pro", "medmcqa", "gpqa"])
def test_synthetic_calibration_is_a_separate_seeded_draw(paper, preset):
    cfg = {"kind": "synthetic", "preset": preset, "n_queries": 50}
    a, b, c = (build_workload(cfg, paper, s) for s in (0, 0, 1))
    assert a.calibration == b.calibration != c.calibration
    for m, s in a.calibration.items():
        assert s.n == CALIBRATION_SIZES[preset]
        true = paper.model(m).output_for(preset).mean()
        assert s.mean_output == pytest.approx(true, rel=0.35)   # a 249-504 draw of a heavy tail
    # the dataset's own lengths: MedMCQA reasoning answers are shorter than GPQA's
    if preset == "medmcqa":
        gpqa = build_workload(dict(cfg, preset="gpqa"), paper, 0)
        assert a.calibration["LlamaR1"].mean_output < gpqa.calibration["LlamaR1"].mean_output


@needs_shared
def test_question_calibration_is_the_simulated_train_answers(paper):
    w = build_workload({"kind": "questions", "dataset": "gpqa"}, paper, 0)
    for m in w.expert_models:
        s = w.calibration[m]
        assert s.n == CALIBRATION_SIZES["gpqa"] and "train" in s.source
    # none of it comes from the test outcomes: their statistics differ
    test = [w.outcomes[r.id].output_tokens for r in w.expert_requests() if r.model == "LlamaR1"]
    assert w.calibration["LlamaR1"].max_output != max(test)


@needs_shared
def test_trace_calibration_is_the_recorded_train_outputs(paper):
    name = "Meta-Llama-3_1-8B-Instruct"
    cfg = {"kind": "trace", "dataset": "mmlu_pro", "questions": "MMLU_Pro_test.json",
           "calibration_questions": "MMLU_Pro_train.json", "n_queries": 50, "k": 2,
           "experts": {name: {"file": f"mmlu_pro/{name}.zip", "format": "mmlu_pro_zip"},
                       "mathstral-7B": {"file": "mmlu_pro/mathstral-7B.zip", "format": "mmlu_pro_zip"}},
           "aggregator": {"file": "mmlu_pro/Meta-Llama-3_1-70B-Instruct.zip", "format": "mmlu_pro_zip",
                          "profile": "LlamaR1"}}
    w = build_workload(cfg, paper, 0)
    trace = read_trace(DATA / "traces" / "mmlu_pro" / f"{name}.zip", "mmlu_pro_zip")
    train = [trace[k].output_tokens for k in read_questions(DATA / "questions" / "MMLU_Pro_train.json").keys
             if k in trace]
    s = w.calibration[name]
    assert (s.n, s.max_output) == (len(train), max(train))
    assert s.mean_output == pytest.approx(np.mean(train))
    assert "calibration questions" in s.source
    assert "profile draw" in w.calibration["LlamaR1"].source     # the aggregator's length is never replayed


def test_calibration_survives_json_round_trip(paper):
    w = build_workload({"kind": "synthetic", "preset": "gpqa", "n_queries": 20}, paper, 0)
    assert Workload.from_json(w.to_json()).calibration == w.calibration


def test_length_stats():
    s = length_stats([10, 30, 20], [5, 7, 6], "x")
    assert (s.n, s.mean_output, s.max_output, s.mean_prompt, s.source) == (3, 20.0, 30, 6.0, "x")
    with pytest.raises(ValueError):
        length_stats([], [], "x")
