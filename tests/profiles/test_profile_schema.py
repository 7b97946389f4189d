"""The profile-file schema (mosaic/profiles/schema.py, strict_yaml.py): every bad profile file stops
the load with one ConfigError line naming the file, the model or section and the field; a file that
loads holds exactly its values; a random corruption of a bundled file does one or the other, and a
file that loads runs with every request accounted for."""
import copy
import logging
import math
import re
from collections import Counter
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mosaic.core.errors import ConfigError
from mosaic.profiles import load_profiles
from mosaic.profiles.loader import BUNDLED_DIR
from mosaic.profiles.schema import unusable_models
from mosaic.profiles.strict_yaml import load_yaml
from mosaic.workload.types import aggregator_request_id

BUNDLED = sorted(p.stem for p in BUNDLED_DIR.glob("*.yaml"))
MOA6 = (BUNDLED_DIR / "moa6_a100.yaml").read_text()


def _edit(old: str, new: str, text: str = MOA6) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def _load_text(tmp_path: Path, text: str, name: str = "p.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return load_profiles(str(path))


def _refused(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as e:
        _load_text(tmp_path, text)
    msg = str(e.value)
    assert "\n" not in msg and str(tmp_path / "p.yaml") in msg
    return msg


# ---------------------------------------------------------------- bundled files load as written

MODEL_FIELDS = ("kind", "hf_id", "params_b", "weight_gib", "kv_bytes_per_token", "n_layers", "hidden_size",
                "load_time_s", "kv_capacity", "unload_time_s")


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_profiles_hold_exactly_their_files_values(name):
    raw = yaml.safe_load((BUNDLED_DIR / f"{name}.yaml").read_text())
    ps = load_profiles(name)
    for key, value in raw["engine"].items():
        if key == "kernels":   # a file of the models' timings: held by the models it times
            assert all(m.kernels is not None for m in ps.models.values())
        elif key not in ("tensor_parallel", "host_contention", "linear_ms_by_tokens", "sources"):
            got = getattr(ps.engine, key)
            assert got == value and type(got) is type(value), key
    for m, spec in raw["models"].items():
        for key in MODEL_FIELDS:
            if key in spec:
                got = getattr(ps.models[m], key)
                assert got == spec[key] and type(got) is type(spec[key]), (m, key)
        outputs = spec["output"] if "shape" not in spec["output"] else {"default": spec["output"]}
        for dataset, out in outputs.items():
            dist = ps.models[m].output_for(None if dataset == "default" else dataset)
            assert dist.cap == out["cap"] and dist.mean() == pytest.approx(out["mean_tokens"], rel=1e-6)
    assert unusable_models(ps) == {}


def test_strict_yaml_reads_bundled_files_as_pyyaml_does():
    for name in BUNDLED:
        text = (BUNDLED_DIR / f"{name}.yaml").read_text()
        assert load_yaml(text, name) == yaml.safe_load(text)


# ---------------------------------------------------------------- the cases, one line each

@pytest.mark.parametrize("text, match", [
    ("", r"the file is empty"),
    ("engine: [1, 2\nmodels: {", r"not valid YAML: .* at line 2, column 7"),
    ("- 1\n- 2\n", r"expected a mapping with fields engine, models"),
    (MOA6.split("\nmodels:\n")[0] + "\nmodels: [LlamaR1, QwenR1]\n", r"models: expected a mapping of model names"),
    (_edit("load_time_s: 45.0", "load_time_s: fast"), r"models\.LlamaR1\.load_time_s: expected a number, got the string 'fast'"),
    (_edit("load_time_s: 45.0", "load_time_s: '45.0'"), r"models\.LlamaR1\.load_time_s: .*remove the quotes"),
    (_edit("load_time_s: 45.0", "load_time_s: 1e300"), r"models\.LlamaR1\.load_time_s must be in \[0, 86400\] \(got 1e\+300\)"),
    (_edit("load_time_s: 45.0", "load_time_s: .nan"), r"models\.LlamaR1\.load_time_s must be a finite number"),
    (_edit("load_time_s: 45.0", "load_time_s: -45.0"), r"models\.LlamaR1\.load_time_s must be in \[0, "),
    (_edit("load_time_s: 45.0", "load_time_s: true"), r"models\.LlamaR1\.load_time_s: expected a number, got true"),
    (_edit("kv_bytes_per_token: 131072", "kv_bytes_per_token: 0"), r"models\.LlamaR1\.kv_bytes_per_token must be in \[1, "),
    (_edit("n_layers: 32", "n_layers: 32.5"), r"models\.LlamaR1\.n_layers: expected an integer, got 32\.5"),
    (_edit("sigma: 0.9}", "sigma: 0}"), r"length_shapes\.instruct\.0\.sigma must be in \(0, 10\]"),
    (_edit("{weight: 0.25, median: 0.25", "{weight: 0.25, median: -0.25"), r"length_shapes\.reasoning\.0\.median must be in \(0, "),
    (_edit("{weight: 0.25, median: 0.25", "{weight: 0.35, median: 0.25"), r"length_shapes\.reasoning: mixture weights must sum to 1 .*1\.1"),
    (_edit("{weight: 0.25, median: 0.25, sigma: 0.6}\n    - {weight: 0.75",
           "{weight: -0.25, median: 0.25, sigma: 0.6}\n    - {weight: 1.25"), r"length_shapes\.reasoning\.0\.weight must be in \(0, 1\]"),
    (_edit("hbm_bandwidth_gbs: 2039", "hbm_bandwidth_gbs: -2039"), r"engine\.hbm_bandwidth_gbs must be in \[0.1, "),
    (_edit("hbm_bandwidth_gbs: 2039", "hbm_bandwidth_gbs: 1.0e-300"), r"engine\.hbm_bandwidth_gbs must be in \[0.1, "),
    (_edit("[512, 34.6], [2048, 145.6]", "[512, 34.6], [2048, 20.0]"), r"engine\.linear_ms_by_tokens\.3\.1: times must not decrease"),
    (_edit("max_num_seqs: 256", "max_num_seqs: 0"), r"engine\.max_num_seqs must be in \[1, "),
    (_edit("gpu_memory_utilization: 0.9", "gpu_memory_utilization: 5.0"), r"engine\.gpu_memory_utilization must be in \(0, 1\]"),
    (_edit("kind: reasoning", "kind: banana"), r"models\.LlamaR1\.kind: 'banana' is not one of 'reasoning', 'instruct'"),
    (_edit("cap: 32768}", "cap: 1e6}"), r"models\.LlamaR1\.output\.cap must be <= engine\.max_model_len \(32768\)"),
    (_edit("max_model_len: 32768", "max_model_len: 200"), r"models\.LlamaR1\.output\.cap must be <= engine\.max_model_len \(200\)"),
    (_edit("max_num_batched_tokens: 32768", "max_num_batched_tokens: 0"), r"engine\.max_num_batched_tokens must be in \[1, "),
    (_edit("max_num_batched_tokens: 32768", "max_num_batched_tokens: 1"), r"engine\.max_num_batched_tokens must be >= max_model_len"),
    (_edit("max_num_batched_tokens: 32768", "max_num_batched_tokens: 32768\n  max_model_len: 200"), r"duplicate key 'max_model_len'"),
    (_edit("mean_tokens: 3380", "mean_tokens: 40000"), r"models\.LlamaR1\.output\.mean_tokens must lie in \[1, cap=32768\) \(got 40000\)"),
    (_edit("shape: reasoning, mean_tokens: 3380", "shape: zigzag, mean_tokens: 3380"), r"models\.LlamaR1\.output\.shape: unknown shape 'zigzag'"),
    (_edit("[[1, 9.7], [128, 13.2]", "[[1, 9.7], [1, 13.2]"), r"engine\.linear_ms_by_tokens\.1\.0: token counts must be > 0 and strictly increasing"),
    (_edit("  LlamaR1:\n", "  LlamaR1:\n    tokenizer: x\n"), r"models\.LlamaR1: unknown field\(s\) \['tokenizer'\]"),
    (MOA6 + "extra: 1\n", r"unknown field\(s\) \['extra'\]"),
    (_edit("load_time_s: 45.0", "load_time_s: !!python/object/apply:os.system [ls]"), r"not valid YAML: could not determine a constructor"),
    (_edit("max_num_seqs: 256", "max_num_seqs: 256\n  host_contention: {step_scale: {1: 0.8, 2: 0.9}, source: x}"),
     r"engine\.host_contention\.step_scale\.2 must be 1: the profile's step costs were measured with the most busy"),
    (_edit("max_num_seqs: 256", "max_num_seqs: 256\n  host_contention: {step_scale: {1: -0.8, 2: 1}, source: x}"),
     r"engine\.host_contention\.step_scale\.1 must lie in \(0, 100\]"),
    (_edit("max_num_seqs: 256", "max_num_seqs: 256\n  host_contention: {step_scale: {0: 0.5, 2: 1}, source: x}"),
     r"engine\.host_contention\.step_scale: a busy-worker count must be an integer >= 1 \(got 0\)"),
    (_edit("max_num_seqs: 256", "max_num_seqs: 256\n  host_contention: {step_scale: {1: 0.8, 2: 1}}"),
     r"engine\.host_contention: missing field 'source'"),
    (_edit("max_num_seqs: 256", "max_num_seqs: 256\n  host_contention: {step_scale: {1: 0.8, 2: 1}, source: x, models: {Nope: {1: 0.7, 2: 1}}}"),
     r"engine\.host_contention\.models\.Nope: no model 'Nope' in this file"),
    (_edit("max_num_seqs: 256", "max_num_seqs: 256\n  host_contention: {step_scale: {1: 0.8, 2: 1}, source: x, models: {LlamaR1: {1: 0.7, 3: 1}}}"),
     r"engine\.host_contention\.models\.LlamaR1 must end at 2 busy workers"),
    (_edit("max_num_seqs: 256", "max_num_seqs: 256\n  host_contention: {step_scale: {1: 0.8, 2: 1}, source: x, models: {LlamaR1: {1: 0.7, 2: 0.9}}}"),
     r"engine\.host_contention\.models\.LlamaR1\.2 must be 1"),
    (_edit("max_num_seqs: 256", "max_num_seqs: 256\n  host_contention: {step_scale: {1: 0.8, 2: 1}, source: x, by_batch: {LlamaR1: {1: {1: 0.9, 2: 1}}}}"),
     r"engine\.host_contention\.by_batch\.LlamaR1: has no table in host_contention\.models"),
    (_edit("max_num_seqs: 256", "max_num_seqs: 256\n  host_contention: {step_scale: {1: 0.8, 2: 1}, source: x, models: {LlamaR1: {1: 0.7, 2: 1}}, by_batch: {LlamaR1: {0: {1: 0.9, 2: 1}}}}"),
     r"engine\.host_contention\.by_batch\.LlamaR1: a running-sequence count must be an integer >= 1 \(got 0\)"),
    (_edit("max_num_seqs: 256", "max_num_seqs: 256\n  host_contention: {step_scale: {1: 0.8, 2: 1}, source: x, models: {LlamaR1: {1: 0.7, 2: 1}}, by_batch: {LlamaR1: {4: {1: 0.9, 3: 1}}}}"),
     r"engine\.host_contention\.by_batch\.LlamaR1\.4 must end at 2 busy workers"),
    (_edit("max_num_seqs: 256", "max_num_seqs: 256\n  host_contention: {step_scale: {1: 0.8, 2: 1}, source: x, models: {LlamaR1: {1: 0.7, 2: 1}}, by_batch: {LlamaR1: {4: {1: nan, 2: 1}}}}"),
     r"engine\.host_contention\.by_batch\.LlamaR1\.4\.1"),
    (_edit("max_num_seqs: 256", "max_num_seqs: 256\n  host_contention: {step_scale: {1: 0.8, 2: 1}, source: x, spin_weight: 1.5}"),
     r"engine\.host_contention\.spin_weight"),
    (_edit("max_num_seqs: 256", "max_num_seqs: 256\n  host_contention: {step_scale: {1: 0.8, 2: 1}, source: x, idle_spin_s: -1}"),
     r"engine\.host_contention\.idle_spin_s"),
])
def test_bad_profile_is_one_line_naming_file_model_and_field(tmp_path, text, match):
    assert re.search(match, _refused(tmp_path, text))


def test_duplicate_model_key_is_refused_not_silently_replaced(tmp_path):
    """A second LlamaR1 entry used to replace the first silently (its mean output became another model's)."""
    assert MOA6.rstrip().endswith("HF config.json\"]")      # `models` is the last section
    msg = _refused(tmp_path, MOA6 + "  LlamaR1:\n    hf_id: other\n")
    assert re.search(r"duplicate key 'LlamaR1' in mapping 'models' at line \d+ \(first at line \d+\)", msg)


def test_duplicate_nested_key_names_its_mapping(tmp_path):
    msg = _refused(tmp_path, _edit("    load_time_s: 45.0\n", "    load_time_s: 45.0\n    load_time_s: 4.5\n"))
    assert "duplicate key 'load_time_s' in mapping 'models.LlamaR1'" in msg


def test_merge_keys_may_override_what_they_bring(tmp_path):
    text = _edit("models:\n  LlamaR1:", "base: &b {kind: reasoning}\nmodels:\n  LlamaR1:\n    <<: *b")
    raw = load_yaml(text.replace("base: &b", "x-base: &b"), "p.yaml")
    assert raw["models"]["LlamaR1"]["kind"] == "reasoning"


def test_exponent_numbers_are_numbers_and_load_as_written(tmp_path):
    text = _edit("load_time_s: 45.0", "load_time_s: 4.5e1")
    text = _edit("max_model_len: 32768", "max_model_len: 3.2768e4", text)
    ps = _load_text(tmp_path, text)
    assert ps.model("LlamaR1").load_time_s == 45.0 and ps.engine.max_model_len == 32768
    assert type(ps.engine.max_model_len) is int
    assert load_yaml("a: 1e300\nb: -2E-3\nc: '1e3'\nd: 1_000\ne: .5e1", "x") == \
        {"a": 1e300, "b": -2e-3, "c": "1e3", "d": 1000, "e": 5.0}


def test_a_model_name_with_a_sample_mark_is_refused(tmp_path):
    """A model GLM#2 beside GLM: GLM's second sample (request q/GLM#2) was taken for model GLM#2's, and
    the run failed blaming the scheduler."""
    msg = _refused(tmp_path, MOA6 + "  GLM#2:\n    hf_id: other\n")
    assert re.search(r"models\.GLM#2.*may not hold '#'", msg), msg


def test_base_8_and_base_60_numbers_are_refused_not_read_as_other_numbers(tmp_path):
    """YAML 1.1 read max_num_seqs: 064 as 52 and load_time_s: 1:30 as 90, and the run went on."""
    assert load_yaml("a: 064\nb: 1:30\nc: 0x10\nd: 0\ne: -7\nf: 07.5", "x") == \
        {"a": "064", "b": "1:30", "c": "0x10", "d": 0, "e": -7, "f": 7.5}
    assert re.search(r"engine\.max_num_seqs.*'064'", _refused(tmp_path, _edit("max_num_seqs: 256", "max_num_seqs: 064")))
    assert re.search(r"models\.LlamaR1\.load_time_s.*'1:30'", _refused(tmp_path, _edit("load_time_s: 45.0", "load_time_s: 1:30")))


def test_model_that_cannot_hold_one_context_is_flagged_not_fatal(tmp_path, caplog):
    text = _edit("weight_gib: 17.21", "weight_gib: 70.0")
    with caplog.at_level(logging.WARNING):
        ps = _load_text(tmp_path, text)
    why = unusable_models(ps)
    assert list(why) == ["Gemma"] and "Gemma" in caplog.text and "max_model_len" in why["Gemma"]
    assert ps.model("Gemma").weight_gib == 70.0


def test_session_fit_and_datasets_are_checked(tmp_path):
    paper = (BUNDLED_DIR / "paper_a100.yaml").read_text()
    msg = _refused(tmp_path, _edit("      - 0.0102459\n", "      - -0.0102459\n", paper))
    assert "models.LlamaR1.session_fit.coef.1 must be in [0, 1e6]" in msg
    msg = _refused(tmp_path, _edit("    difficulty_length: 0.687\n", "    difficulty_length: 0.9\n    length_shared: 0.5\n",
                                   _edit("    length_shared: 0.0\n", "", paper)))
    assert "datasets.mmlu_pro.length_shared: difficulty_length^2 + length_shared^2 must be < 1" in msg


# ---------------------------------------------------------------- fuzz: corrupt a bundled file

PAPER_RAW = yaml.safe_load((BUNDLED_DIR / "paper_a100.yaml").read_text())


def _paths(node, path=()):
    """Every (path, value) below `node` (mappings and lists alike)."""
    yield path, node
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    seen = set()
    for k, v in items:
        if id(v) in seen:
            continue
        seen.add(id(v))
        yield from _paths(v, (*path, k))


def _get(node, path):
    for k in path:
        node = node[k]
    return node


ALL_PATHS = [p for p, _ in _paths(PAPER_RAW) if p and not any(k in ("sources", "source") for k in p if isinstance(k, str))]
LEAVES = [p for p in ALL_PATHS if isinstance(_get(PAPER_RAW, p), (int, float)) and not isinstance(_get(PAPER_RAW, p), bool)]
CONTAINERS = [p for p in ALL_PATHS if isinstance(_get(PAPER_RAW, p), (dict, list))]
BAD_VALUES = [0, -1, -0.5, math.nan, math.inf, 1e300, 10**30, "abc", "12", True, None, 2.5, 1e5]


def _field_name(path) -> str:
    """The nearest named key of a path (a list index or a TP degree names no field)."""
    return next(str(k) for k in reversed(path) if isinstance(k, str))


@st.composite
def corruptions(draw):
    """(kind, path, value): what to do where (the file is built from it in the test)."""
    kind = draw(st.sampled_from(["value", "value", "value", "delete", "retype", "weights", "duplicate", "exponent"]))
    if kind == "value":
        return kind, draw(st.sampled_from(LEAVES)), draw(st.sampled_from(BAD_VALUES))
    if kind == "delete":
        return kind, draw(st.sampled_from([p for p in ALL_PATHS if isinstance(_get(PAPER_RAW, p[:-1]), dict)])), None
    if kind == "retype":
        return kind, draw(st.sampled_from(CONTAINERS)), None
    if kind == "weights":
        shape = draw(st.sampled_from(sorted(PAPER_RAW["length_shapes"])))
        return kind, ("length_shapes", shape, 0, "weight"), draw(st.sampled_from([0.5, 1.5, 1.0 + 1e-3]))
    return kind, None, None


def _corrupt(kind, path, value):
    raw = copy.deepcopy(PAPER_RAW)
    if kind == "value":
        _get(raw, path[:-1])[path[-1]] = value
    elif kind == "delete":
        del _get(raw, path[:-1])[path[-1]]
    elif kind == "retype":
        v = _get(raw, path)
        _get(raw, path[:-1])[path[-1]] = dict(enumerate(v)) if isinstance(v, list) else list(v.values())
    elif kind == "weights":
        _get(raw, path[:-1])[path[-1]] *= value
    return raw


def _loaded_value(ps, path):
    """The ProfileSet's value for a file path, where one field maps to one (else a sentinel)."""
    if path[0] == "engine" and len(path) == 2 and path[1] not in ("linear_ms_by_tokens", "sources", "tensor_parallel",
                                                                  "host_contention"):
        return getattr(ps.engine, path[1])
    if path[0] == "models" and len(path) == 3 and path[2] in MODEL_FIELDS:
        return getattr(ps.models[path[1]], path[2])
    if path[0] == "models" and path[2] == "accuracy" and len(path) == 5:
        return ps.models[path[1]].accuracy[path[3]][path[4]]
    if path[0] == "models" and path[2] == "output" and path[-1] == "cap":
        return ps.models[path[1]].output_for(None if len(path) == 4 or path[3] == "default" else path[3]).cap
    if path[:3] == ("engine", "tensor_parallel", "step_speedup") and len(path) == 4:
        return ps.engine.tensor_parallel.step_speedup[path[3]]
    return ...


def _text_of(raw, kind, data):
    text = yaml.safe_dump(raw, sort_keys=False, width=120)
    if kind == "duplicate":   # repeat one `key: scalar` line right below itself
        lines = text.split("\n")
        indent = [len(line) - len(line.lstrip()) for line in lines] + [0]
        simple = [i for i, line in enumerate(lines)
                  if re.match(r"^ *[a-z_]+: [^&*{\[|>'\"]+$", line) and indent[i + 1] <= indent[i]]
        i = data.draw(st.sampled_from(simple))
        key = lines[i].strip().split(":")[0]
        lines.insert(i + 1, lines[i])
        return "\n".join(lines), key
    if kind == "exponent":    # a float written in exponent form: the same number
        matches = list(re.finditer(r"(?<=: )(\d+)\.(\d+)$", text, re.M))
        m = data.draw(st.sampled_from(matches))
        digits = m.group(1) + m.group(2)
        return text[:m.start()] + f"{digits}e-{len(m.group(2))}" + text[m.end():], None
    return text, None


@pytest.mark.slow
@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(corruptions(), st.data())
def test_corrupted_profile_loads_as_written_and_runs_or_names_the_field(tmp_path_factory, case, data):
    from mosaic.run.app import run
    from mosaic.run.builder import compose

    kind, path, value = case
    raw = _corrupt(kind, path, value)
    text, dup_key = _text_of(raw, kind, data)
    path_file = tmp_path_factory.mktemp("fuzz") / "corrupt.yaml"
    path_file.write_text(text)
    try:
        ps = load_profiles(str(path_file))
    except ConfigError as e:
        msg = str(e)
        assert "\n" not in msg and str(path_file) in msg
        # It names the corrupted field, or (a deletion that left its mapping empty) that mapping.
        named = [dup_key] if kind == "duplicate" else [_field_name(path)] if path else []
        if kind == "delete" and len(path) > 1 and len(_get(raw, path[:-1])) == 0:
            named.append(_field_name(path[:-1]))
        assert not named or any(n in msg for n in named), f"{msg!r} names none of {named}"
        return
    assert kind not in ("duplicate", "weights"), f"{kind} corruption at {path} loaded"
    if kind == "exponent":
        assert ps == load_profiles("paper_a100")
    if kind == "value":
        got, want = _loaded_value(ps, path), _get(raw, path)
        assert got is ... or got == want, f"{path}: loaded {got!r}, the file says {want!r}"
    try:
        out = run(compose(["workload=synth_small", "workload.n_queries=5", f"workload.profiles={path_file}"]))
    except ConfigError as e:
        # It loads, but this run cannot use it: the refusal names the field, or (a model flagged
        # as unable to hold one context) the cluster's memory.
        msg = str(e)
        assert "\n" not in msg and path is not None, msg
        assert _field_name(path) in msg or (unusable_models(ps) and "cluster.memory_gib" in msg), msg
        return
    _accounted(out)


def _accounted(out):
    """Every expert and aggregator request has exactly one result; every query a final answer."""
    res, s = out.result, out.summary
    expert_ids = [r.id for r in res.workload.expert_requests()]
    assert Counter(r.request_id for r in res.expert.trace.requests) == Counter(expert_ids)
    to_run = {aggregator_request_id(d.query_id) for d in res.decisions if not d.skip}
    assert Counter(r.request_id for r in res.aggregator.trace.requests) == Counter(to_run)
    assert set(res.final_answers) == {q.id for q in res.workload.queries} and len(res.workload.queries) == 5
    assert s["n_failed_requests"] == 0 and s["admission"]["truncated_requests"] == 0


def test_a_profile_path_is_a_file_first_and_a_bundled_name_only_as_a_bare_word(tmp_path):
    import shutil

    from mosaic.core.errors import ConfigError
    from mosaic.profiles import load_profiles
    from mosaic.profiles.loader import BUNDLED_DIR

    shutil.copy(BUNDLED_DIR / "moa6_a100.yaml", tmp_path / "mine")            # no suffix: still a file
    assert set(load_profiles(str(tmp_path / "mine")).models) == set(load_profiles("moa6_a100").models)
    with pytest.raises(ConfigError, match="is a directory; name a profile YAML file in it"):
        load_profiles(str(tmp_path))
    with pytest.raises(ConfigError, match="the setting is empty; name a bundled profile set"):
        load_profiles("")   # Path('') is the current folder: it was called a directory
    with pytest.raises(ConfigError, match=r"no file '.*/nothere'"):
        load_profiles(str(tmp_path / "nothere"))


def test_a_dataset_the_outputs_do_not_list_is_warned_once(tmp_path, caplog):
    """output: {default: ..., mmlu-pro: ...} ran mmlu_pro on the default lengths without a word."""
    text = _edit("output: {shape: reasoning, mean_tokens: 3380, cap: 32768}",
                 "output: {default: {shape: reasoning, mean_tokens: 3380, cap: 32768}, "
                 "mmlu-pro: {shape: reasoning, mean_tokens: 100, cap: 32768}}")
    m = _load_text(tmp_path, text).model("LlamaR1")
    with caplog.at_level(logging.WARNING):
        assert m.output_for("mmlu_pro") is m.output and m.output_for("mmlu_pro") is m.output
        assert m.output_for("mmlu-pro").mean() < 200
    said = [r.getMessage() for r in caplog.records if "not 'mmlu_pro'" in r.getMessage()]
    assert said == ["profile of LlamaR1: its output lengths list datasets mmlu-pro but not 'mmlu_pro', this run's; "
                    "its default entry is used"]
