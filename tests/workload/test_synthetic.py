from collections import Counter

import numpy as np
import pytest
from scipy.stats import spearmanr

from mosaic.core.errors import ConfigError
from mosaic.workload.answer_model import EXPERTS, PRESETS, SyntheticSpec
from mosaic.workload.sources.synthetic import generate
from mosaic.workload.types import expert_request_id, expert_slots


def slot_outcomes(w, q):
    return [w.outcomes[expert_request_id(q.id, m, s)] for m, s in expert_slots(q.experts)]


@pytest.mark.parametrize("preset, n", [("mmlu_pro", 2100), ("medmcqa", 4183), ("gpqa", 198)])
def test_preset_sizes(profiles, preset, n):
    w = generate(SyntheticSpec(preset=preset), profiles, seed=0)
    assert len(w.queries) == n
    assert len(w.expert_requests()) == 3 * n
    assert w.aggregator == PRESETS[preset].aggregator
    assert all(len(q.experts) == 3 for q in w.queries)
    ids = [r.id for r in w.expert_requests()]
    assert len(set(ids)) == len(ids) and set(ids) <= set(w.outcomes)


def test_without_replacement_experts_are_distinct(profiles):
    w = generate(SyntheticSpec(replacement=False), profiles, seed=0)
    assert all(len(set(q.experts)) == 3 for q in w.queries)
    assert all("#" not in r.id for r in w.expert_requests())


def test_same_seed_same_workload_other_seed_differs(profiles):
    a = generate(SyntheticSpec(n_queries=300), profiles, seed=1)
    assert a == generate(SyntheticSpec(n_queries=300), profiles, seed=1)
    assert a != generate(SyntheticSpec(n_queries=300), profiles, seed=2)


def test_demand_is_skewed(profiles):
    w = generate(SyntheticSpec(preset="medmcqa"), profiles, seed=0)
    demand = Counter(m for q in w.queries for m in q.experts)
    fair = 3 * len(w.queries) / len(EXPERTS)
    assert max(demand.values()) > 1.5 * fair and min(demand.get(e, 0) for e in EXPERTS) < 0.5 * fair


def test_reasoning_experts_write_much_longer_answers(profiles):
    w = generate(SyntheticSpec(), profiles, seed=0)
    lens = {m: [] for m in EXPERTS}
    for r in w.expert_requests():
        lens[r.model].append(w.outcomes[r.id].output_tokens)
    reasoning = np.mean(lens["LlamaR1"] + lens["QwenR1"])
    instruct = np.mean(sum((lens[m] for m in ("Gemma", "Exaone", "GLM", "Qwen")), []))
    assert 4 < reasoning / instruct < 9          # paper: ~6.3x


def test_agreement_is_mixed_and_anticorrelated_with_length(profiles):
    w = generate(SyntheticSpec(), profiles, seed=0)
    top, mean_len = [], []
    for q in w.queries:
        outs = slot_outcomes(w, q)
        top.append(Counter(o.answer for o in outs).most_common(1)[0][1])
        mean_len.append(np.mean([o.output_tokens for o in outs]))
    top = np.array(top)
    assert {1, 2, 3} <= set(top)                 # 1:1:1, 2:1 and 3:0 all occur
    rho = spearmanr(mean_len, top)[0]
    assert -0.45 < rho < -0.1                    # paper: -0.27
    assert np.mean(np.array(mean_len)[top == 3]) < np.mean(np.array(mean_len)[top == 1])


@pytest.mark.parametrize("field, value, match", [
    ("preset", "nope", "workload.preset"), ("n_queries", 0, "workload.n_queries"), ("k", 9, "workload.k")])
def test_bad_spec(profiles, field, value, match):
    with pytest.raises(ConfigError, match=match):
        generate(SyntheticSpec(**{field: value}), profiles, seed=0)
