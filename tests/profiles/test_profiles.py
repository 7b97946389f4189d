import numpy as np
import pytest

from mosaic.core.errors import ConfigError
from mosaic.profiles import LengthComponent, LengthDistribution, kv_capacity_tokens, load_profiles

PAPER_MEANS = {"reasoning": 3289, "instruct": 518}


def test_bundled_profiles_keep_paper_length_statistics(profiles):
    by_kind = {"reasoning": [], "instruct": []}
    for m in profiles.models.values():
        by_kind[m.kind].append(m.output.mean())
        assert 38 <= m.load_time_s <= 47          # paper: l_m = 38-47 s
        assert m.sources                          # every model says where its numbers come from
    for kind, means in by_kind.items():
        assert np.mean(means) == pytest.approx(PAPER_MEANS[kind], rel=0.01)
    longest = max(by_kind["reasoning"]) / min(by_kind["instruct"])
    assert 12 <= longest <= 13.5                  # "up to 13x"


def test_reasoning_shape_is_heavy_tailed_like_r1(profiles):
    d = profiles.model("LlamaR1").output
    # DeepSeek-R1 production: median/mean 0.52, p99/mean 8.3.
    assert 0.4 < d.quantile(0.5) / d.mean() < 0.65
    assert 5 < d.quantile(0.99) / d.mean() < 10


def test_sampling_matches_analytic_mean():
    d = LengthDistribution((LengthComponent(0.3, 200, 0.6), LengthComponent(0.7, 900, 1.0)), cap=4000)
    s = d.sample(np.random.default_rng(0), 200_000)
    assert s.max() <= 4000 and s.min() >= 1
    assert s.mean() == pytest.approx(d.mean(), rel=0.01)
    assert (s == 4000).mean() == pytest.approx(1 - d.cdf(3999.999), abs=0.003)


def test_calibration_hits_target_mean():
    d = LengthDistribution((LengthComponent(1.0, 1.0, 0.9),), cap=8192).calibrated_to_mean(518)
    assert d.mean() == pytest.approx(518, rel=1e-6)


def test_kv_capacity_full_gpu(profiles):
    m = profiles.model("LlamaR1")
    # (80 GiB x 0.9 - 14.96 GiB) / 128 KiB per token.
    assert kv_capacity_tokens(m, profiles.engine, 80) == int((72 - 14.96) * 2**30 // 131072)


def test_unknown_profile_set_is_a_clear_error():
    with pytest.raises(ConfigError, match="no file 'nope'.*moa6_a100"):
        load_profiles("nope")


def test_unknown_model_names_known_ones(profiles):
    with pytest.raises(ConfigError, match="known models"):
        profiles.model("GPT-9")


# ---------------------------------------------------------------- accuracy tables

def _raw_with(accuracy=None):
    import yaml
    from mosaic.profiles.loader import BUNDLED_DIR
    raw = yaml.safe_load((BUNDLED_DIR / "moa6_a100.yaml").read_text())
    if accuracy is not None:
        raw["models"]["Gemma"]["accuracy"] = accuracy
    return raw


def test_profile_accuracy_table_parses():
    from mosaic.profiles import parse_profiles
    ps = parse_profiles(_raw_with({"mmlu_pro": {"all": 0.5, "law": 0.3, "math": 1e-3}, "gpqa": {"all": 0.34}}))
    assert ps.model("Gemma").accuracy == {"mmlu_pro": {"all": 0.5, "law": 0.3, "math": 0.001},
                                          "gpqa": {"all": 0.34}}
    assert ps.model("Qwen").accuracy == {}          # no `accuracy` key: empty, still loads


def test_profile_without_accuracy_key_loads_empty(profiles):
    assert all(m.accuracy == {} for m in profiles.models.values())


@pytest.mark.parametrize("table, match", [
    ({"mmlu_pro": {"law": 1.2}}, r"models\.Gemma\.accuracy\.mmlu_pro\.law: accuracy must be a number in \(0, 1\)"),
    ({"mmlu_pro": {"law": 0.0}}, r"Gemma\.accuracy\.mmlu_pro\.law"),
    ({"gpqa": {"all": 1}}, r"Gemma\.accuracy\.gpqa\.all"),
    ({"gpqa": {"all": "high"}}, r"Gemma\.accuracy\.gpqa\.all"),
    ({"gpqa": {"all": True}}, r"Gemma\.accuracy\.gpqa\.all"),
    ({"gpqa": 0.4}, r"Gemma\.accuracy\.gpqa: expected a non-empty mapping"),
    ([0.4], r"Gemma\.accuracy: expected a mapping"),
])
def test_profile_accuracy_out_of_range_names_the_field(table, match):
    from mosaic.profiles import parse_profiles
    with pytest.raises(ConfigError, match=match):
        parse_profiles(_raw_with(table))


# ---------------------------------------------------------------- output lengths per dataset

def _raw_output(output):
    raw = _raw_with()
    raw["models"]["Gemma"]["output"] = output
    return raw


def test_output_per_dataset_with_default():
    from mosaic.profiles import parse_profiles
    ps = parse_profiles(_raw_output({"default": {"shape": "instruct", "mean_tokens": 300, "cap": 8192},
                                     "gpqa": {"shape": "instruct", "mean_tokens": 450, "cap": 8192}}))
    m = ps.model("Gemma")
    assert m.output_for("gpqa").mean() == pytest.approx(450, rel=1e-6)
    assert m.output_for("medmcqa").mean() == pytest.approx(300, rel=1e-6)   # not listed: the default
    assert m.output_for(None) is m.output
    assert ps.model("Qwen").outputs == {}                                  # one distribution: legacy form
    assert ps.model("Qwen").output_for("gpqa") is ps.model("Qwen").output


@pytest.mark.parametrize("output, match", [
    ({"gpqa": {"shape": "instruct", "mean_tokens": 450, "cap": 8192}}, r"Gemma\.output: a per-dataset output needs a 'default'"),
    ({"default": 300}, r"Gemma\.output\.default: expected \{shape, mean_tokens, cap\}"),
    ({"default": {"shape": "instruct", "mean_tokens": 300, "cap": 8192},
      "gpqa": {"shape": "zigzag", "mean_tokens": 1, "cap": 10}}, r"Gemma\.output\.gpqa\.shape: unknown shape 'zigzag'"),
    ([1, 2], r"Gemma\.output: expected"),
])
def test_bad_per_dataset_output_names_the_field(output, match):
    from mosaic.profiles import parse_profiles
    with pytest.raises(ConfigError, match=match):
        parse_profiles(_raw_output(output))


def test_bad_session_fit_names_the_field():
    from mosaic.profiles import parse_profiles
    raw = _raw_with()
    raw["models"]["Gemma"]["session_fit"] = {"form": "linear", "coef": [1.0], "kv_tokens": 1, "max_num_seqs": 1}
    with pytest.raises(ConfigError, match=r"models\.Gemma\.session_fit\.coef: form 'linear' takes 4"):
        parse_profiles(raw)


def test_bundled_profiles_name_models_portably():
    """A profile measured on one machine must not carry that machine's paths (a tiny stand-in is
    named tiny:<name> and built under the cache directory where it runs)."""
    import yaml

    from mosaic.profiles.loader import BUNDLED_DIR

    for path in sorted(BUNDLED_DIR.glob("*.yaml")):
        for name, m in yaml.safe_load(path.read_text())["models"].items():
            ref = str(m["hf_id"])
            assert not ref.startswith(("/", "~", ".")) and "/home/" not in ref, f"{path.name}: {name} hf_id {ref}"
