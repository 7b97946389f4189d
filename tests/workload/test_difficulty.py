"""The difficulty coupling: marginal accuracies kept, category factors, settings, profile entries."""
from dataclasses import replace

import numpy as np
import pytest
from scipy.special import expit

from mosaic.core.errors import ConfigError
from mosaic.profiles import load_profiles
from mosaic.profiles.difficulty import DifficultyModel, parse_dataset, resolve
from mosaic.workload.answer_model import EXPERTS, SyntheticSpec
from mosaic.workload.sources.synthetic import generate
from mosaic.workload.types import expert_request_id, expert_slots


@pytest.mark.parametrize("a", [0.0, 1.2, 3.0, 30.0])   # 30: 41 Hermite nodes gave 0.08 for 0.10
def test_conditional_logit_keeps_the_marginal_accuracy(a):
    p = np.array([[0.1, 0.45], [0.7, 0.95]])
    b = DifficultyModel(accuracy=a).conditional_logit(p)
    z = np.random.default_rng(0).normal(size=400_000)
    marginal = np.array([[expit(x - a * z).mean() for x in row] for row in b])
    assert np.allclose(marginal, p, atol=3e-3)
    if a > 0:   # a question of average difficulty is answered better than the average question
        assert np.all((b > np.log(p / (1 - p))) == (p > 0.5))


@pytest.mark.parametrize("kw, field", [({"accuracy": -1.0}, "difficulty_accuracy"), ({"length": 1.0}, "difficulty_length"),
                                       ({"shared": 1.2}, "length_shared"), ({"length": 0.8, "shared": 0.7}, "length_shared"),
                                       ({"distractor_share": 1.5}, "distractor_share"),
                                       ({"category_length": {"law": 0.0}}, "category_length")])
def test_bad_coupling_names_the_field(kw, field):
    with pytest.raises(ConfigError, match=field):
        DifficultyModel(**kw)


def test_overrides_replace_only_what_they_set():
    base = DifficultyModel(accuracy=3.0, length=0.7, shared=0.1, distractor_share=0.75, category_length={"law": 2.0})
    got = resolve(base, length=0.2)
    assert (got.accuracy, got.length, got.shared, got.distractor_share) == (3.0, 0.2, 0.1, 0.75)
    assert got.category_length == {"law": 2.0}
    assert resolve(None) == DifficultyModel()


def test_profile_datasets_section_is_parsed_and_checked():
    raw_ok = {"difficulty_accuracy": 2.5, "difficulty_length": 0.5, "category_length": {"law": 1.5},
              "sources": ["a fit"]}
    m = parse_dataset(raw_ok, "p.datasets.x")
    assert (m.accuracy, m.length, m.shared, m.category_length, m.sources) == (2.5, 0.5, 0.0, {"law": 1.5}, ("a fit",))
    with pytest.raises(ConfigError, match=r"p.datasets.x: unknown keys \['difficulty'\]"):
        parse_dataset({"difficulty": 1}, "p.datasets.x")
    with pytest.raises(ConfigError, match="p.datasets.x.difficulty_length must be a number"):
        parse_dataset({"difficulty_length": "high"}, "p.datasets.x")
    with pytest.raises(ConfigError, match="p.datasets.x: workload.difficulty_length"):
        parse_dataset({"difficulty_length": 1.5}, "p.datasets.x")


def test_bundled_paper_profile_carries_a_measured_coupling_per_dataset():
    p = load_profiles("paper_a100")
    assert set(p.datasets) == {"mmlu_pro", "medmcqa", "gpqa", "aime24"}
    assert all(m.sources and "fit_difficulty" in m.sources[0] for m in p.datasets.values())
    assert len(p.datasets["mmlu_pro"].category_length) == 14


def _profiles_with(profiles, model: DifficultyModel):
    return replace(profiles, datasets={"mmlu_pro": model})


def test_workload_uses_the_profile_coupling_unless_assumed(profiles):
    strong = _profiles_with(profiles, DifficultyModel(accuracy=4.0, length=0.6, distractor_share=1.0))

    def unanimous(w):
        return np.mean([len({w.outcomes[expert_request_id(q.id, m, s)].answer for m, s in expert_slots(q.experts)}) == 1
                        for q in w.queries])

    measured = generate(SyntheticSpec(n_queries=600), strong, seed=0)
    assumed = generate(SyntheticSpec(n_queries=600, coupling="assumed"), strong, seed=0)
    assert assumed == generate(SyntheticSpec(n_queries=600), profiles, seed=0)   # no entry = the built-in
    assert unanimous(measured) > unanimous(assumed) + 0.1   # errors fall on the same questions and answer
    with pytest.raises(ConfigError, match="workload.coupling"):
        generate(SyntheticSpec(n_queries=10, coupling="fitted"), strong, seed=0)


def test_category_factor_scales_lengths_but_keeps_each_models_mean(profiles):
    cats = {"math": 3.0, "history": 1.0}
    long_math = _profiles_with(profiles, DifficultyModel(category_length={c: cats.get(c, 1.0) for c in
                                                                         ("math", "history")}))
    w = generate(SyntheticSpec(n_queries=2000), long_math, seed=1)
    flat = generate(SyntheticSpec(n_queries=2000), profiles, seed=1)
    by = {c: [] for c in ("math", "history", "other")}
    model_means = {}
    for wl, key in ((w, "scaled"), (flat, "flat")):
        lens = {m: [] for m in EXPERTS}
        for r in wl.expert_requests():
            lens[r.model].append(wl.outcomes[r.id].output_tokens)
        model_means[key] = {m: np.mean(v) for m, v in lens.items() if len(v) > 200}
    cat_of = {q.id: q.category for q in w.queries}
    for r in w.expert_requests():
        if r.model == "LlamaR1":
            by[cat_of[r.query_id] if cat_of[r.query_id] in by else "other"].append(w.outcomes[r.id].output_tokens)
    assert np.mean(by["math"]) > 2.0 * np.mean(by["history"])
    for m, mean in model_means["scaled"].items():   # a model's mean per served prompt stays its profile's
        assert mean == pytest.approx(model_means["flat"][m], rel=0.15)


def test_conditional_logit_solves_for_any_allowed_discrimination():
    """A discrimination of 1000 (the setting's bound) needs b far outside +-60: it was a root-finder's
    'f(a) and f(b) must have different signs' traceback."""
    m = DifficultyModel(accuracy=1000.0)
    p = np.array([0.2, 0.5, 0.9])
    b = m.conditional_logit(p)
    assert np.all(np.isfinite(b)) and np.all(np.diff(b) > 0)
    z = np.random.default_rng(0).normal(size=400_000)
    assert np.allclose([expit(x - 1000.0 * z).mean() for x in b], p, atol=3e-3)
