"""Output-length fitting (mosaic/fitting/lengths.py) on known samples, and the committed result."""
import numpy as np
import pytest

from mosaic.fitting import lengths as fp
from mosaic.profiles import load_profiles

PAPER_EXPERTS = ("LlamaR1", "QwenR1", "Gemma", "Exaone", "GLM", "Qwen")
COST_FIELDS = ("hf_id", "kind", "params_b", "weight_gib", "kv_bytes_per_token", "n_layers", "hidden_size",
               "load_time_s")


def lognormal(rng, median, sigma, n):
    return np.maximum(1, np.rint(rng.lognormal(np.log(median), sigma, n))).astype(int)


def test_recovers_lognormal_sigma_and_median():
    t = lognormal(np.random.default_rng(0), 300, 0.8, 3000)
    fit = fp.fit_mixture([(t, np.zeros(len(t), bool))], 1)
    assert fit.sigmas[0] == pytest.approx(0.8, abs=0.04)
    assert np.exp(fit.mus[0]) == pytest.approx(300, rel=0.05)


def test_censoring_is_handled():
    t = lognormal(np.random.default_rng(1), 300, 0.8, 3000)
    cap = int(np.quantile(t, 0.8))
    clipped, cens = np.minimum(t, cap), t >= cap
    censored_fit = fp.fit_mixture([(clipped, cens)], 1)
    naive_fit = fp.fit_mixture([(clipped, np.zeros(len(t), bool))], 1)
    assert censored_fit.sigmas[0] == pytest.approx(0.8, abs=0.06)
    assert naive_fit.sigmas[0] < 0.7                 # ignoring the cap shrinks the tail


def test_groups_share_the_shape_with_their_own_scale():
    rng = np.random.default_rng(2)
    a, b = lognormal(rng, 100, 0.6, 2000), lognormal(rng, 400, 0.6, 2000)
    none = np.zeros(2000, bool)
    fit = fp.fit_mixture([(a, none), (b, none)], 1)
    assert fit.shifts[1] == pytest.approx(np.log(4), abs=0.06)
    assert fit.sigmas[0] == pytest.approx(0.6, abs=0.04)


def test_bic_picks_two_components_for_a_bimodal_sample():
    rng = np.random.default_rng(3)
    t = np.concatenate([lognormal(rng, 15, 0.5, 600), lognormal(rng, 800, 0.6, 1400)])
    fit = fp.select_fit([(t, np.zeros(len(t), bool))])
    assert len(fit.weights) == 2
    assert fit.weights[0] == pytest.approx(0.3, abs=0.05)
    shape = fp.shape_components(fit)
    assert shape[1]["median"] == 1.0 and shape[0]["median"] == pytest.approx(15 / 800, rel=0.2)


def test_load_time_stays_in_paper_range():
    assert fp.load_time_s(3.8) == 38.0 and fp.load_time_s(70) == 47.0
    assert 38 < fp.load_time_s(8.5) < 47


def test_committed_paper_profiles():
    ps, base = load_profiles("paper_a100"), load_profiles("moa6_a100")
    for name in PAPER_EXPERTS:   # same costs as the paper profile set, fitted shapes
        m, b = ps.model(name), base.model(name)
        assert all(getattr(m, f) == getattr(b, f) for f in COST_FIELDS)
    # MMLU-Pro (the default) means: the paper's three named ones; the four instruct experts
    # average the paper's instruct mean.
    for name, mean in {"LlamaR1": 3146, "QwenR1": 3734, "Gemma": 291}.items():
        assert ps.model(name).output_for("mmlu_pro").mean() == pytest.approx(mean, rel=1e-3)
        assert ps.model(name).output.mean() == pytest.approx(mean, rel=1e-3)
    instruct = [ps.model(n).output.mean() for n in PAPER_EXPERTS if ps.model(n).kind == "instruct"]
    assert np.mean(instruct) == pytest.approx(518, rel=0.01)
    for name in PAPER_EXPERTS:   # a profile per (model, dataset), each mean with its source
        m = ps.model(name)
        assert set(m.outputs) == {"mmlu_pro", "medmcqa", "gpqa", "aime24"}
        for ds in ("medmcqa", "gpqa", "aime24"):
            assert any(s.startswith(f"output.{ds}") for s in m.sources)
        assert m.output_for("medmcqa").mean() < m.output_for("mmlu_pro").mean() < m.output_for("gpqa").mean()
        assert m.session_fit is not None and m.session_fit.error_median < 0.3
    assert all(m.sources for m in ps.models.values())
    # Every model a trace workload config names has a profile.
    for name in ("Meta-Llama-3_1-8B-Instruct", "Mistral-7B-Instruct-v0.2", "Qwen1.5-7B-Chat",
                 "Phi-3-mini-4k-instruct", "mathstral-7B", "QwQ-32B-Preview", "o1-mini", "o3-mini",
                 "gpt-4o-mini", "claude-3-5-haiku", "Llama-3.3-70B-Instruct-Turbo"):
        assert 38 <= ps.model(name).load_time_s <= 47
    assert ps.model("Qwen1.5-7B-Chat").kv_bytes_per_token == 2 * 32 * 32 * 128 * 2   # MHA


# ---------------------------------------------------------------- accuracy

MMLU_CATEGORIES = {"biology", "business", "chemistry", "computer science", "economics", "engineering", "health",
                   "history", "law", "math", "other", "philosophy", "physics", "psychology"}


def test_logit_deviation_of_a_tiny_input():
    from scipy.special import logit
    per_model = {"a": (0.5, {"x": 0.75, "y": 0.25}), "b": (0.2, {"x": 0.5, "y": 0.1})}
    dev = fp.logit_deviations(per_model)
    assert list(dev) == ["x", "y"]
    assert dev["x"] == pytest.approx((np.log(3) + 0.0 - logit(0.2)) / 2)       # (ln 3 + (0 - ln 1/4)) / 2
    assert dev["y"] == pytest.approx((-np.log(3) + logit(0.1) - logit(0.2)) / 2)
    # A category only one model was scored in averages over that model alone.
    assert fp.logit_deviations({"a": (0.5, {"z": 0.75}), "b": (0.2, {})})["z"] == pytest.approx(np.log(3))


def test_category_accuracy_counts_missing_answers_as_wrong():
    from types import SimpleNamespace as R
    recs = [R(category="x", answer="A", gold="A"), R(category="x", answer=None, gold="B"),
            R(category="y", answer="C", gold="D"), R(category="y", answer="D", gold="D")]
    assert fp.category_accuracy(recs) == (0.5, {"x": 0.5, "y": 0.5})


def test_expert_table_spreads_the_overall_level():
    from scipy.special import expit, logit
    t = fp.expert_accuracy({"mmlu_pro": 0.5, "gpqa": 0.3}, {"law": -0.6, "biology": 0.8})
    assert t["gpqa"] == {"all": 0.3}
    assert t["mmlu_pro"]["all"] == 0.5
    assert t["mmlu_pro"]["law"] == pytest.approx(expit(-0.6), abs=1e-4)
    assert t["mmlu_pro"]["biology"] == pytest.approx(expit(logit(0.5) + 0.8), abs=1e-4)


def test_committed_profiles_carry_accuracy_tables():
    from scipy.special import logit
    ps = load_profiles("paper_a100")
    devs = []
    for name in PAPER_EXPERTS:
        acc = ps.model(name).accuracy
        assert set(acc) == set(fp.PRESETS)
        assert set(acc["mmlu_pro"]) == MMLU_CATEGORIES | {"all"}
        assert all(set(acc[ds]) == {"all"} for ds in acc if ds != "mmlu_pro")
        assert any("accuracy.mmlu_pro.<category>" in s for s in ps.model(name).sources)
        level = logit(acc["mmlu_pro"]["all"])
        devs.append({c: logit(a) - level for c, a in acc["mmlu_pro"].items() if c != "all"})
    # One measured spread shared by the six experts (up to rounding).
    for c in MMLU_CATEGORIES:
        assert np.ptp([d[c] for d in devs]) < 2e-3
    assert devs[0]["biology"] > 0 > devs[0]["law"]
    for name in fp.INSTRUCT_TRACES:   # trace models: measured per-category accuracy
        acc = ps.model(name).accuracy["mmlu_pro"]
        assert set(acc) == MMLU_CATEGORIES | {"all"}
        assert any(s.startswith("accuracy.mmlu_pro: measured") for s in ps.model(name).sources)
    assert ps.model("Meta-Llama-3_1-8B-Instruct").accuracy["mmlu_pro"]["all"] == pytest.approx(0.44, abs=0.01)


# ---------------------------------------------------------------- lengths per dataset

def test_math_length_fit_is_longer_for_harder_subjects():
    a, b = fp.math_length_fit()
    assert b < 0                                            # lower accuracy, longer traces
    for acc, tokens in fp.MATH_R1_QWEN_7B.values():         # the fit passes near every subject
        assert np.exp(a + b * np.log(acc / (1 - acc))) == pytest.approx(tokens, rel=0.3)


def test_mmlu_pro_means_keep_the_paper_figures_and_instruct_mean():
    base = {"R": {"kind": "reasoning", "output": {"mean_tokens": 3000}},
            "LlamaR1": {"kind": "reasoning", "output": {"mean_tokens": 1}},
            "Gemma": {"kind": "instruct", "output": {"mean_tokens": 1}},
            "A": {"kind": "instruct", "output": {"mean_tokens": 600}},
            "B": {"kind": "instruct", "output": {"mean_tokens": 300}}}
    base.pop("R")
    m = fp.mmlu_pro_means(base)
    assert m["LlamaR1"] == 3146 and m["Gemma"] == 291
    assert (m["Gemma"] + m["A"] + m["B"]) / 3 == pytest.approx(518)
    assert m["A"] / m["B"] == pytest.approx(2.0)            # the split is kept


def test_output_spec_defaults_to_mmlu_pro():
    spec = fp.output_spec("instruct", {"mmlu_pro": 500.0, "gpqa": 700.0}, 8192)
    assert spec["default"] == spec["mmlu_pro"] == {"shape": "instruct", "mean_tokens": 500.0, "cap": 8192}
    assert spec["gpqa"]["mean_tokens"] == 700.0
