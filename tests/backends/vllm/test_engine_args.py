"""A misspelt engine setting names itself before any engine starts loading."""
import pytest

from mosaic.core.errors import ConfigError

pytestmark = pytest.mark.vllm


def test_an_unknown_engine_setting_is_refused_by_name(monkeypatch):
    pytest.importorskip("vllm")
    import vllm

    from mosaic.backends.vllm import worker

    started = []
    monkeypatch.setattr(vllm.LLMEngine, "from_engine_args", lambda *a, **k: started.append(a))
    with pytest.raises(ConfigError, match=r"models\.engine .*no setting bogus, max_num_seq\b"):
        worker.start_engine("unused", {"max_num_seq": 4, "bogus": 1, "max_model_len": 256})
    assert started == []
    worker.start_engine("unused", {"max_num_seqs": 4, "max_model_len": 256})   # known settings go through
    assert len(started) == 1
