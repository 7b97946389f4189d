"""The host-contention measurement's arithmetic and its profile update (the engines run in the
slow suite's profiler tests; here nothing starts one)."""
import shutil

import pytest
import yaml

from mosaic.core.errors import ConfigError
from mosaic.fitting.host_contention import DEFAULTS, measure_contention, request_counts, spread, step_scale, write_into
from mosaic.profiles import load_profiles
from mosaic.profiles.loader import _DATA


def test_step_scale_is_relative_to_the_most_busy_count():
    assert step_scale({1: [6.0, 7.0, 6.5], 2: [9.0, 10.0, 9.5]}) == {1: round(6.5 / 9.5, 3), 2: 1.0}
    assert spread([9.0, 10.0, 9.5]) == pytest.approx(0.5 / 9.5)


@pytest.mark.parametrize("change, match", [({"n_workers": 1}, "n_workers must be >= 2"),
                                           ({"out": 144}, "need 0 < out < long_out"),
                                           ({"model": "Nope"}, "Nope"),
                                           ({"requests": "1,0"}, r"requests=0: must be >= 1"),
                                           ({"requests": "4,4"}, "listed twice"),
                                           ({"spin": "maybe"}, "spin=maybe: give true or false")])
def test_bad_options_are_refused_before_any_engine_starts(change, match):
    with pytest.raises(ConfigError, match=match):
        measure_contention({**DEFAULTS, **change})


def test_the_block_is_written_into_the_profile_and_loads(tmp_path):
    path = tmp_path / "p.yaml"
    shutil.copy(_DATA / "tiny_cpu.yaml", path)
    block = {"step_scale": {1: 0.7, 2: 1.0}, "models": {"Qwen": {1: 0.6, 2: 1.0}}, "source": "test"}
    write_into(str(path), block)
    hc = load_profiles(str(path)).engine.host_contention
    assert hc.scale(1, "Qwen") == 0.6 and hc.scale(1, "GLM") == 0.7 and hc.scale(2) == 1.0
    assert yaml.safe_load(path.read_text())["models"].keys() == yaml.safe_load(
        (_DATA / "tiny_cpu.yaml").read_text())["models"].keys()
    with pytest.raises(ConfigError, match="no such file"):
        write_into(str(tmp_path / "missing.yaml"), block)


def test_request_counts_are_read_as_an_ascending_list():
    assert request_counts({"requests": "32,1,4"}) == [1, 4, 32]
    assert request_counts({"requests": 32}) == [32] and request_counts({"requests": "[1, 8]"}) == [1, 8]


def test_a_block_measured_by_batch_is_written_and_loads(tmp_path):
    path = tmp_path / "p.yaml"
    shutil.copy(_DATA / "tiny_cpu.yaml", path)
    block = {"step_scale": {1: 0.7, 2: 1.0}, "models": {"Qwen": {1: 0.6, 2: 1.0}},
             "by_batch": {"Qwen": {1: {1: 0.9, 2: 1.0}, 32: {1: 0.6, 2: 1.0}}}, "source": "test"}
    write_into(str(path), block)
    hc = load_profiles(str(path)).engine.host_contention
    assert hc.scale(1, "Qwen", 1) == 0.9 and hc.scale(1, "Qwen", 32) == 0.6 and hc.scale(1, "Qwen") == 0.6
