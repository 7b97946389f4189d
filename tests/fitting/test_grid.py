"""The profiler's grid measures each term of the step model where that term is a large share of a
window; a term that is never more than a sliver of any window is left to the noise by the fit."""
import pytest
from omegaconf import OmegaConf

from mosaic.config import CONF_DIR
from mosaic.fitting.options import grid_option
from mosaic.fitting.real_engine import COEFS, FIT_TERMS, _replica_steps, grid_cells, window_terms
from mosaic.profiles import load_profiles

# tiny_cpu's engine: 128-token blocks, 64 sequences, a 2048-token step budget
BLOCK, BLOCKS, SEQS, BUDGET = 128, 4096, 64, 2048


def _largest_shares(grid, cost):
    best = dict.fromkeys(FIT_TERMS, 0.0)
    for n, length, out in grid_cells(grid):
        w = window_terms(_replica_steps([(str(i), length, out) for i in range(n)], BLOCK, BLOCKS, SEQS, BUDGET))
        parts = {t: cost[c] * w[t] for c, t in zip(COEFS, FIT_TERMS)}
        for t, v in parts.items():
            best[t] = max(best[t], v / sum(parts.values()))
    return best


@pytest.mark.parametrize("model", ["Exaone", "LlamaR1", "Qwen"])
def test_the_profile_grid_gives_the_decode_context_term_a_large_share(model):
    grid = grid_option(OmegaConf.to_container(OmegaConf.load(CONF_DIR / "profile.yaml"))["grid"])
    cost = load_profiles("tiny_cpu").model(model).cost
    shares = _largest_shares(grid, cost)
    assert shares["ctx"] > 0.3, shares
    assert shares["attn"] > 0.3 and shares["tokens"] > 0.3 and shares["steps"] > 0.3, shares
    # without the long decodes, every window is mostly its prefill
    assert _largest_shares(dict(grid, decode=[]), cost)["ctx"] < 0.2


def test_a_decode_cell_must_give_requests_length_and_outputs():
    from mosaic.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"grid\.decode\.0"):
        grid_option({"repeats": 1, "decode": [[64, 512]]})
    assert grid_cells(grid_option({"repeats": 1, "decode": [[2, 8, 5]]})) == [(2, 8, 5)]


def test_a_batch_longer_than_the_engine_takes_is_refused_before_measuring():
    from mosaic.core.errors import ConfigError

    assert grid_option({"repeats": 1, "decode": [[1, 1500, 500]]}, max_model_len=2048)
    with pytest.raises(ConfigError, match=r"grid\.decode: a batch of 2100 tokens .* max_model_len 2048"):
        grid_option({"repeats": 1, "decode": [[1, 1600, 500]]}, max_model_len=2048)
    with pytest.raises(ConfigError, match=r"grid\.context_lengths"):
        grid_option({"repeats": 1, "batch_sizes": [1], "context_lengths": [2040], "outputs": [49]}, max_model_len=2048)
