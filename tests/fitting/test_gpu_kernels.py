"""The kernel timer (mosaic/fitting/gpu_kernels.py) and its command, run on the CPU with a tiny
model's shapes: what it writes is what a profile's engine.kernels reads."""
import json
from pathlib import Path

import pytest
import yaml

from mosaic.engine import CostModel
from mosaic.profiles import load_profiles

torch = pytest.importorskip("torch")
from mosaic.fitting import gpu_kernels  # noqa: E402
from experiments import measure_gpu_kernels as cli  # noqa: E402

DATA = Path(__file__).parents[2] / "mosaic" / "profiles" / "data"
TINY = {"intermediate_size": 96, "n_heads": 4, "n_kv_heads": 2, "head_dim": 8, "vocab_size": 128}


@pytest.fixture
def small_shapes(monkeypatch):
    """Small shapes, every kernel run for real, and a clock that rises with each timing: a shared
    2-core host's timings of tiny kernels are noise (a fit's slope came out < 0 on one machine), and
    these tests are about what is timed and written, not about this CPU's speed."""
    monkeypatch.setattr(gpu_kernels, "LINEAR_TOKENS", (1, 8, 64))
    monkeypatch.setattr(gpu_kernels, "DECODE_SHAPES", ((1, 64), (4, 256), (8, 512)))
    monkeypatch.setattr(gpu_kernels, "PREFILL_LENGTHS", (64, 128, 256))
    clock = iter(range(1, 10_000))

    def rising(timer, fn, reps, repeats):
        fn()
        return {"ms": float(next(clock)), "spread": 0.0}

    monkeypatch.setattr(gpu_kernels, "_repeat", rising)


def test_timer_measures_milliseconds_per_call():
    import time

    timer = gpu_kernels._timer(torch, torch.device("cpu"))
    assert 2.0 <= timer(lambda: time.sleep(0.002), 3) < 50.0
    out = gpu_kernels._repeat(timer, lambda: time.sleep(0.001), reps=2, repeats=3)
    assert out["ms"] >= 1.0 and out["spread"] >= 0


def _profile(tmp_path, kernels=None, arch=TINY):
    doc = yaml.safe_load((DATA / "faster_moa_h200.yaml").read_text())
    doc["engine"].pop("kernels")
    if kernels:
        doc["engine"]["kernels"] = kernels
    small = doc["models"]["Qwen3VL4B"]
    small.update(n_layers=2, hidden_size=32)
    if arch is None:
        small.pop("arch")
    else:
        small["arch"] = arch
    doc["models"] = {"Small": small}
    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump(doc))
    return p


def test_fit_slope_recovers_a_line_and_refuses_one_that_does_not_rise():
    assert gpu_kernels._fit_slope([1, 2, 4, 8], [3.5, 5.5, 9.5, 17.5]) == pytest.approx((1.5, 2.0))
    # timings that are noise (seen on a fast CPU with tiny shapes) would write a file the profile refuses
    with pytest.raises(ValueError, match=r"prefill attention: the time does not grow with the work .* time larger"):
        gpu_kernels._fit_slope([1, 4, 16], [0.03, 0.02, 0.025], "prefill attention")


def test_measure_times_every_shape_and_fits_what_it_timed(small_shapes):
    m = {"t": {"n_layers": 2, "hidden_size": 32, "arch": TINY}}
    out = gpu_kernels.measure(m, device="cpu", reps=2, repeats=2, log=lambda s: None)
    row = out["models"]["t"]
    assert out["device"] == "cpu" and not out["cuda_graphs"]
    assert [p["tokens"] for p in row["linear"]] == [1, 8, 64]
    assert all(p["ms"] > 0 and p["spread"] >= 0 and p["step_ms"] > 0 for p in row["linear"])
    pts = row["decode"]["points"]
    assert [(p["seqs"], p["context"]) for p in pts] == [(1, 64), (4, 256), (8, 512)]
    slope = gpu_kernels._fit_slope([p["seqs"] * p["context"] for p in pts], [p["ms"] for p in pts])[1]
    assert row["decode"]["ms_per_ctx_token_layer"] == pytest.approx(slope)
    assert [p["length"] for p in row["prefill"]["points"]] == [64, 128, 256]


def test_measure_refuses_a_model_without_its_shapes_and_cuda_without_a_gpu():
    with pytest.raises(ValueError, match=r"models\.t: needs whole numbers >= 1 for \['intermediate_size'"):
        gpu_kernels.arch_of("t", {"n_layers": 2, "hidden_size": 32})
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="device=cuda: torch sees no CUDA device; give device=cpu"):
            gpu_kernels.measure({"t": {"n_layers": 2, "hidden_size": 32, "arch": TINY}}, device="cuda")


def test_command_writes_the_file_the_profile_reads(tmp_path, small_shapes, capsys):
    p = _profile(tmp_path, kernels="p.kernels.json")
    cli.main([f"profile={p}", "device=cpu", "reps=1", "repeats=2"])
    said = capsys.readouterr().out
    written = json.loads((tmp_path / "p.kernels.json").read_text())
    assert written["command"].startswith("python experiments/measure_gpu_kernels.py profile=")
    assert "reads it (engine.kernels: p.kernels.json) and loads" in said
    prof = load_profiles(str(p))
    k = prof.models["Small"].kernels
    assert k.ctx_ms == pytest.approx(2 * written["models"]["Small"]["decode"]["ms_per_ctx_token_layer"])
    assert CostModel(prof.models["Small"], prof.engine).linear_ms(1) == pytest.approx(k.linear_ms_by_tokens[0][1])
    assert k.linear_ms_by_tokens[0][1] == pytest.approx(written["models"]["Small"]["linear"][0]["step_ms"])


def test_command_says_how_to_use_a_file_the_profile_does_not_name(tmp_path, small_shapes, capsys):
    p = _profile(tmp_path)
    cli.main([f"profile={p}", "device=cpu", "reps=1", "repeats=1", f"out={tmp_path / 'x.json'}"])
    assert "to use it, set engine.kernels: x.json in" in capsys.readouterr().out


@pytest.mark.parametrize("args, match", [
    ([], r"profile=: give the profile file"),
    (["models=Nope"], r"models=Nope: no model 'Nope' in .* \(it has Small\)"),
    (["device=tpu"], r"device=tpu: give cuda or cpu"),
    (["out={p}"], r"that is the profile itself"),
    (["reps=0"], r"reps=0: must be >= 1"),
])
def test_command_refuses_bad_options_before_measuring(tmp_path, capsys, args, match):
    p = _profile(tmp_path)
    argv = ([f"profile={p}"] if args else []) + [a.format(p=p) for a in args] + ["device=cpu"]
    if args and args[0].startswith("device"):
        argv = [f"profile={p}"] + [a.format(p=p) for a in args]
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    import re
    assert re.search(match, capsys.readouterr().err)


def test_command_refuses_a_model_without_arch(tmp_path, capsys):
    p = _profile(tmp_path, arch=None)
    with pytest.raises(SystemExit) as e:
        cli.main([f"profile={p}", "device=cpu"])
    assert e.value.code == 2
    assert "models.Small: needs whole numbers >= 1 for ['intermediate_size'" in capsys.readouterr().err
