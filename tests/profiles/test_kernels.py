"""Measured kernel costs (engine.kernels): the file's terms replace the derived ones, for the models
it times only, and a file that does not fit the profile is one line naming what and where."""
import json
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from mosaic.core.errors import ConfigError
from mosaic.engine import CostModel
from mosaic.profiles import load_profiles

DATA = Path(__file__).parents[2] / "mosaic" / "profiles" / "data"


def _entry(n_layers=36, hidden=2560, linear=((1, 2.0), (128, 3.0), (2048, 20.0))):
    return {"arch": {"n_layers": n_layers, "hidden_size": hidden, "intermediate_size": 9728, "n_heads": 32,
                     "n_kv_heads": 8, "head_dim": 128, "vocab_size": 151936},
            "linear": [{"tokens": t, "ms": ms, "spread": 0.01} for t, ms in linear],
            "decode": {"ms_per_ctx_token_layer": 1e-6, "intercept_ms": 0.02, "points": []},
            "prefill": {"ms_per_len2_layer": 2e-8, "intercept_ms": 0.03, "points": []}}


def _profile(tmp_path, entries, kernels="k.json", drop_kernels_of=()):
    doc = yaml.safe_load((DATA / "faster_moa_h200.yaml").read_text())
    doc["engine"]["kernels"] = kernels
    (tmp_path / "k.json").write_text(json.dumps({"device": "GPU X", "torch": "2.x", "models": entries}))
    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump(doc))
    return p


def test_timed_model_takes_the_files_terms_and_the_others_keep_the_derived_ones(tmp_path):
    p = _profile(tmp_path, {"Qwen3VL4B": _entry()})
    prof = load_profiles(str(p))
    small, big = prof.models["Qwen3VL4B"], prof.models["Qwen3VL32B"]
    assert big.kernels is None and small.kernels.source == "kernels timed on GPU X"
    cm = CostModel(small, prof.engine)
    assert cm.linear_ms(1) == pytest.approx(2.0)               # its own table, not scaled by parameters
    assert cm.linear_ms(1088) == pytest.approx(3.0 + 17.0 * 960 / 1920)   # interpolated
    assert cm.linear_ms(4096) == pytest.approx(20.0 + 17.0 / 1920 * 2048)  # last slope extended
    assert cm.decode_ms_per_ctx_token == pytest.approx(36e-6)   # per layer x 36 layers
    assert cm.prefill_ms_per_len2 == pytest.approx(36 * 2e-8)
    # one decode step of 4 sequences over 1000 cached tokens: overheads + linear(4) + attention
    e = prof.engine
    want = e.step_overhead_ms + 4 * e.per_seq_overhead_ms + (2.0 + 1.0 * 3 / 127) + 36e-6 * 1000
    assert cm.step_s(4, 4, 1000, 0.0) == pytest.approx(want / 1e3)
    derived = CostModel(replace(small, kernels=None), e)
    assert derived.linear_ms(1) != pytest.approx(2.0)
    assert CostModel(big, e).linear_ms(1) == pytest.approx(CostModel(replace(big, kernels=None), e).linear_ms(1))


def test_the_table_is_the_whole_steps_work_where_the_file_timed_it(tmp_path):
    entry = _entry()
    for p, step in zip(entry["linear"], (2.5, 3.6, 23.0)):   # GEMMs plus the layers' other kernels
        p.update(step_ms=step, step_spread=0.02)
    prof = load_profiles(str(_profile(tmp_path, {"Qwen3VL4B": entry})))
    assert prof.models["Qwen3VL4B"].kernels.linear_ms_by_tokens == ((1, 2.5), (128, 3.6), (2048, 23.0))


def test_a_noisy_dip_in_the_timed_table_is_held_level(tmp_path):
    p = _profile(tmp_path, {"Qwen3VL4B": _entry(linear=((1, 5.0), (16, 4.9), (64, 6.0)))})
    assert load_profiles(str(p)).models["Qwen3VL4B"].kernels.linear_ms_by_tokens == ((1, 5.0), (16, 5.0), (64, 6.0))


def test_tensor_parallel_divides_the_timed_terms_as_the_derived_ones(tmp_path):
    doc = yaml.safe_load((DATA / "paper_a100.yaml").read_text())
    name, m = next((n, m) for n, m in doc["models"].items() if "cost" not in m)
    doc["engine"]["kernels"] = "k.json"
    (tmp_path / "k.json").write_text(json.dumps({"device": "GPU X", "torch": "2.x", "models": {
        name: _entry(n_layers=m["n_layers"], hidden=m["hidden_size"])}}))
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(doc))
    prof = load_profiles(str(tmp_path / "p.yaml"))
    timed = prof.models[name]
    for tp in (2, 4):
        ratio = CostModel(timed, prof.engine, tp=tp).linear_ms(2048) / CostModel(timed, prof.engine).linear_ms(2048)
        plain = replace(timed, kernels=None)
        want = CostModel(plain, prof.engine, tp=tp).linear_ms(2048) / CostModel(plain, prof.engine).linear_ms(2048)
        assert ratio == pytest.approx(want) and ratio < 1


def test_bundled_faster_moa_profile_reads_its_h200_timings():
    prof = load_profiles("faster_moa_h200")
    for name, m in prof.models.items():
        assert m.kernels is not None, name
        assert "H200" in m.kernels.source
        table = m.kernels.linear_ms_by_tokens
        assert all(b[1] >= a[1] for a, b in zip(table, table[1:]))
    # the larger model's step costs more at every token count it was timed at
    s, b = prof.models["Qwen3VL4B"].kernels, prof.models["Qwen3VL32B"].kernels
    assert all(bm > sm for (_, sm), (_, bm) in zip(s.linear_ms_by_tokens, b.linear_ms_by_tokens))


@pytest.mark.parametrize("change, match", [
    (lambda e: e.update(linear=e["linear"][:1]), r"models\.Qwen3VL4B\.linear"),
    (lambda e: e["decode"].update(ms_per_ctx_token_layer=-1), r"ms_per_ctx_token_layer"),
    (lambda e: e["arch"].update(n_layers=35), r"models\.Qwen3VL4B\.arch\.n_layers is 35 but the profile's .*36"),
    (lambda e: e.update(linear=[{"tokens": 8, "ms": 1, "spread": 0}, {"tokens": 4, "ms": 2, "spread": 0}]),
     r"strictly increasing"),
    (lambda e: e.pop("prefill"), r"models\.Qwen3VL4B\.prefill"),
])
def test_a_bad_kernels_file_names_the_field(tmp_path, change, match):
    entry = _entry()
    change(entry)
    with pytest.raises(ConfigError, match=r"engine\.kernels \(k\.json\).*" + match):
        load_profiles(str(_profile(tmp_path, {"Qwen3VL4B": entry})))


def test_kernels_file_missing_or_timing_none_of_the_models(tmp_path):
    with pytest.raises(ConfigError, match=r"engine\.kernels \(nope\.json\): no such file; write it with "
                                          r"experiments/measure_gpu_kernels\.py"):
        load_profiles(str(_profile(tmp_path, {"Qwen3VL4B": _entry()}, kernels="nope.json")))
    with pytest.raises(ConfigError, match=r"times none of this profile's models \(it has \['Other'\]"):
        load_profiles(str(_profile(tmp_path, {"Other": _entry()})))


def test_a_model_with_a_cost_fit_and_timed_kernels_is_refused(tmp_path):
    p = _profile(tmp_path, {"Qwen3VL4B": _entry()})
    doc = yaml.safe_load(p.read_text())
    doc["models"]["Qwen3VL4B"]["cost"] = {"step_ms": 1, "token_ms": 0.1, "ctx_ms": 0.001, "len2_ms": 1e-6}
    p.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match=r"models\.Qwen3VL4B has a measured cost fit and kernel timings in k\.json; "
                                          r"keep one"):
        load_profiles(str(p))


def test_arch_block_is_checked(tmp_path):
    doc = yaml.safe_load((DATA / "faster_moa_h200.yaml").read_text())
    doc["engine"].pop("kernels")
    doc["models"]["Qwen3VL4B"]["arch"]["n_kv_heads"] = 5
    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match=r"models\.Qwen3VL4B.*arch.*n_kv_heads.*must divide n_heads \(32\)"):
        load_profiles(str(p))
