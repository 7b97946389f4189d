"""Recruitment with replacement, repeated-expert request ids, Table-3 routing, and repeats end to end."""
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest

from mosaic.config.schema import AggregationConfig
from mosaic.run.aggregation import agreement
from mosaic.cluster import Cluster
from mosaic.core.errors import ConfigError
from mosaic.run.pipeline import aggregator_requests, run_pipeline
from mosaic.config.schema import SchedulerConfig
from mosaic.trace import RequestRecord, Trace
from mosaic.workload.routing import recruit as routing
from mosaic.analysis.slots import repeat_share, router_vs_table3, slot_counts, table3_rows
from mosaic.workload.answer_model import EXPERTS, SyntheticSpec
from mosaic.workload.sources.synthetic import generate
from mosaic.workload.types import Outcome, Query, Workload, expert_request_id, expert_slots
from mosaic.backends.sim.backend import SimBackend
from tests.helpers import SHARED_DATA, needs_shared

SHARED = SHARED_DATA / "questions"


# ---------------------------------------------------------------- request ids

def test_request_ids_number_repeats():
    assert expert_request_id("q7", "Gemma") == "q7/Gemma"
    assert expert_request_id("q7", "Gemma", 2) == "q7/Gemma#2"
    assert expert_slots(("A", "B", "A", "A")) == [("A", 1), ("B", 1), ("A", 2), ("A", 3)]
    q = Query("q7", "all", 10, "A", ("A", "B", "A"))
    w = Workload("t", 0, (q,), ("A", "B"), "AGG")
    assert [r.id for r in w.expert_requests()] == ["q7/A", "q7/B", "q7/A#2"]
    with pytest.raises(ValueError):
        expert_request_id("q", "m", 0)


# ---------------------------------------------------------------- the Symbolic-MoE recruiter

def test_recruit_probabilities_follow_symbolic_moe_by_hand():
    # Two questions, three experts, 10 calibration questions per category, 100 overall.
    skill = np.array([[0.8, 0.6, 0.3],      # local scores 6, 2, -4: only the first two are candidates
                      [0.2, 0.4, 0.3]])     # -6, -2, -4: none positive, shifted to 1, 5, 3
    cal = routing.Calibration(np.array([0.7, 0.5, 0.2]), 100, np.array([10.0, 10.0]))
    # Global scores 40, 0, -60 -> shifted 101, 61, 1 -> squared 10201, 3721, 1.
    g = np.array([10201.0, 3721.0, 1.0])
    expected = np.array([[6 * g[0], 2 * g[1], 0.0], [1 * g[0], 5 * g[1], 3 * g[2]]])
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(routing.recruit_probabilities(skill, cal), expected)


def test_draw_is_with_replacement_and_never_picks_an_impossible_expert():
    p = np.tile([0.5, 0.0, 0.3, 0.2, 0.0], (20000, 1))
    chosen = routing.draw(p, 3, np.random.default_rng(0))
    counts = np.bincount(chosen.ravel(), minlength=5) / chosen.size
    assert counts[1] == counts[4] == 0
    np.testing.assert_allclose(counts, p[0], atol=0.01)
    assert np.mean([len(set(row)) < 3 for row in chosen]) > 0.3     # repeats are common


def test_synthetic_workload_repeats_experts_as_independent_samples(profiles):
    w = generate(SyntheticSpec(n_queries=400), profiles, seed=0)
    assert 0 < repeat_share(w) < 1
    repeated = [(q, m) for q in w.queries for m, s in expert_slots(q.experts) if s == 2]
    assert repeated
    # Two samples of one model are independent draws: they differ in length (and sometimes answer).
    same_len = [w.outcomes[expert_request_id(q.id, m)].output_tokens ==
                w.outcomes[expert_request_id(q.id, m, 2)].output_tokens for q, m in repeated]
    assert np.mean(same_len) < 0.2
    differ = [w.outcomes[expert_request_id(q.id, m)].answer != w.outcomes[expert_request_id(q.id, m, 2)].answer
              for q, m in repeated]
    assert 0 < np.mean(differ) < 1


def test_replacement_false_keeps_distinct_experts(profiles):
    w = generate(SyntheticSpec(n_queries=300, replacement=False), profiles, seed=0)
    assert repeat_share(w) == 0 and all(len(set(q.experts)) == 3 for q in w.queries)


@pytest.mark.parametrize("field, value, match", [
    ("routing", "oracle", "workload.routing: 'oracle' is not one of"),
    ("replacement", "yes", "workload.replacement must be true or false"),
])
def test_bad_routing_config(profiles, field, value, match):
    with pytest.raises(ConfigError, match=match):
        generate(SyntheticSpec(n_queries=10, **{field: value}), profiles, seed=0)


# ---------------------------------------------------------------- Table 3

@pytest.mark.parametrize("preset", ["mmlu_pro", "medmcqa", "gpqa"])
def test_table3_counts_are_exact_for_every_seed(profiles, preset):
    a = generate(SyntheticSpec(preset=preset, routing="paper_table3"), profiles, seed=0)
    b = generate(SyntheticSpec(preset=preset, routing="paper_table3"), profiles, seed=0)
    c = generate(SyntheticSpec(preset=preset, routing="paper_table3"), profiles, seed=1)
    for w in (a, c):
        assert slot_counts(w) == routing.PAPER_TABLE3[preset]
        assert all(len(q.experts) == 3 for q in w.queries)
    assert [q.experts for q in a.queries] == [q.experts for q in b.queries]     # seeded
    assert [q.experts for q in a.queries] != [q.experts for q in c.queries]
    rows = table3_rows(a, preset)
    assert all(r["slots"] == r["paper_slots"] for r in rows)


def test_table3_assignments_follow_skill(profiles):
    # Per category, an expert's share of the slots rises with its accuracy there.
    w = generate(SyntheticSpec(preset="mmlu_pro", routing="paper_table3"), profiles, seed=0)
    from mosaic.workload.answer_model import PRESETS, skill_table
    table = skill_table(PRESETS["mmlu_pro"], 0.4)
    cats = PRESETS["mmlu_pro"].categories
    share = np.zeros_like(table)
    for q in w.queries:
        for m in q.experts:
            share[cats.index(q.category), EXPERTS.index(m)] += 1
    share /= share.sum(axis=0, keepdims=True)
    rho = [np.corrcoef(table[:, e], share[:, e])[0, 1] for e in range(len(EXPERTS))]
    assert np.mean(rho) > 0.3


def test_table3_scales_to_a_subset_and_refuses_other_pools(profiles):
    w = generate(SyntheticSpec(preset="medmcqa", n_queries=100, routing="paper_table3"), profiles, seed=0)
    counts = slot_counts(w)
    assert sum(counts.values()) == 300 and counts["Qwen"] > counts["Gemma"] > counts["QwenR1"]
    with pytest.raises(ConfigError, match="Table 3 covers"):
        generate(SyntheticSpec(preset="aime24", routing="paper_table3"), profiles, seed=0)
    with pytest.raises(ConfigError, match="set workload.replacement=true"):
        generate(SyntheticSpec(routing="paper_table3", replacement=False), profiles, seed=0)
    with pytest.raises(ConfigError, match="the paper's six experts"):
        routing.table3_targets("gpqa", ("a", "b"), 10, 3)


def test_repair_moves_the_fewest_slots():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(4), size=50)
    chosen = routing.draw(p, 3, rng)
    counts = np.bincount(chosen.ravel(), minlength=4)
    targets = counts.copy()
    targets[np.argmax(counts)] -= 2
    targets[np.argmin(counts)] += 2
    fixed = routing.repair(chosen, p, targets)
    assert (np.bincount(fixed.ravel(), minlength=4) == targets).all()
    assert (fixed != chosen).sum() == 2


# ---------------------------------------------------------------- end to end with repeats

def test_repeated_experts_end_to_end_on_the_simulator(profiles):
    base = generate(SyntheticSpec(preset="gpqa", n_queries=60), profiles, seed=3)
    # Make one query answered twice by the same model: two votes for "C" from it, one "A" elsewhere.
    q0 = replace(base.queries[0], experts=("QwenR1", "LlamaR1", "QwenR1"), gold="C")
    outcomes = dict(base.outcomes)
    outcomes[expert_request_id(q0.id, "QwenR1")] = Outcome(900, "C")
    outcomes[expert_request_id(q0.id, "QwenR1", 2)] = Outcome(1200, "C")
    outcomes[expert_request_id(q0.id, "LlamaR1")] = Outcome(700, "A")
    w = replace(base, queries=(q0, *base.queries[1:]), outcomes=outcomes)
    assert repeat_share(w) > 0

    cluster = Cluster.uniform(4, 80.0)
    res = run_pipeline(w, cluster, profiles, SchedulerConfig(name="ilp", max_models_per_worker=2),
                       SimBackend(cluster, profiles), AggregationConfig(policy="threshold", tau=2 / 3))
    reqs = w.expert_requests()
    ids = [r.request_id for r in res.expert.trace.requests]
    assert len(ids) == len(set(ids)) == len(reqs)            # every request exactly one result, ids unique
    assert set(ids) == {r.id for r in reqs}
    for r in res.expert.trace.requests:
        assert r.output_tokens == w.outcomes[r.request_id].output_tokens
    d0 = next(d for d in res.decisions if d.query_id == q0.id)
    assert d0.agreement == pytest.approx(2 / 3) and d0.majority == "C" and d0.skip   # both QwenR1 votes count
    assert res.final_answers[q0.id] == "C"
    assert set(res.final_answers) == {q.id for q in w.queries}


def test_agreement_counts_each_sample_as_a_vote():
    assert agreement(["B", "B", "C"]) == (pytest.approx(2 / 3), "B")   # e.g. Gemma, Gemma#2, Qwen


def test_aggregator_prompt_includes_every_sample():
    q = Query("q1", "all", 30, "B", ("A1", "A1", "A2"), 0.0, "What is 2+2? The options are: (A) 3 (B) 4")
    wl = Workload("t", 0, (q,), ("A1", "A2"), "AGG")
    texts = {"q1/A1": "first sample (B)", "q1/A1#2": "second sample (A)", "q1/A2": "third (B)"}
    recs = tuple(RequestRecord(rid, "q1", rid.split("/")[1].split("#")[0], "expert", 0, 0, 0.0, 0.1, 0.2, 30, 5,
                               None, None, t) for rid, t in texts.items())
    (req,), _ = aggregator_requests(wl, Trace("expert", "vllm", 0.2, recs, (), ()), {"q1"}, max_prompt=4096)
    for t in texts.values():
        assert t in req.prompt
    # Without texts the prompt length still counts every sample's output.
    plain = tuple(replace(r, text=None) for r in recs)
    (req2,), _ = aggregator_requests(wl, Trace("expert", "sim", 0.2, plain, (), ()), {"q1"}, max_prompt=4096)
    assert req2.prompt is None and req2.prompt_tokens >= 30 + 3 * 5


# ---------------------------------------------------------------- real question sets

@needs_shared
def test_router_vs_table3_on_the_real_question_sets():
    rows = router_vs_table3(questions_dir=str(SHARED), datasets=("gpqa",))
    assert [r["model"] for r in rows] == list(EXPERTS)
    assert sum(r["slots"] for r in rows) == sum(r["paper_slots"] for r in rows) == 594
    assert all(0 < r["repeat_share"] < 1 for r in rows)
    table3 = router_vs_table3(questions_dir=str(SHARED), datasets=("gpqa",), routing="paper_table3")
    assert all(r["slots"] == r["paper_slots"] for r in table3)


@needs_shared
def test_aime24_workload_has_integer_answers(profiles):
    from mosaic.workload.sources.questions import build
    w = build({"kind": "questions", "dataset": "aime24", "questions_dir": str(SHARED), "name": "aime24"},
              profiles, seed=0)
    assert len(w.queries) == 30 and w.aggregator == "QwenR1" and w.options == ()
    assert all(q.gold.isdigit() and 0 <= int(q.gold) <= 999 for q in w.queries)
    answers = [o.answer for o in w.outcomes.values()]
    assert all(a.isdigit() and int(a) <= 999 for a in answers)
    golds = {q.id: q.gold for q in w.queries}
    right = [w.outcomes[r.id].answer == golds[r.query_id] for r in w.expert_requests()]
    assert 0 < np.mean(right) < 1
    assert Counter(m for q in w.queries for m in q.experts).keys() <= {"LlamaR1", "QwenR1"}  # only positive net skill


def test_repeated_workload_round_trips_through_json(profiles):
    w = generate(SyntheticSpec(preset="aime24"), profiles, seed=0)
    assert repeat_share(w) > 0
    assert Workload.from_json(w.to_json()) == w
