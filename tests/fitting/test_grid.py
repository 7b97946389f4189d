"""The profiler's grid measures each term of the step model where that term is a large share of a
window; a term that is never more than a sliver of any window is left to the noise by the fit."""
import pytest
from omegaconf import OmegaConf

from mosaic.config import CONF_DIR
from mosaic.fitting.options import grid_option
from mosaic.backends.vllm.probe import _replica_steps, grid_cells, window_terms
from mosaic.profiles.calibration import COEFS, FIT_TERMS
from mosaic.profiles import load_profiles

# tiny_cpu's engine: 128-token blocks, 64 sequences, a 2048-token step budget
BLOCK, BLOCKS, SEQS, BUDGET = 128, 4096, 64, 2048
MAX_LEN = 2048   # its max_model_len


def _largest_shares(grid, cost):
    best = dict.fromkeys(FIT_TERMS, 0.0)
    for cell in grid_cells(grid):
        w = window_terms(_replica_steps([(str(i), *r) for i, r in enumerate(cell.requests)], BLOCK, BLOCKS, SEQS,
                                        BUDGET))
        parts = {t: cost[c] * w[t] for c, t in zip(COEFS, FIT_TERMS)}
        for t, v in parts.items():
            best[t] = max(best[t], v / sum(parts.values()))
    return best


@pytest.mark.parametrize("model", ["Exaone", "LlamaR1", "Qwen"])
def test_the_profile_grid_gives_the_decode_context_term_a_large_share(model):
    grid = grid_option(OmegaConf.to_container(OmegaConf.load(CONF_DIR / "profile.yaml"))["grid"])
    cost = load_profiles("tiny_cpu").model(model).cost
    shares = _largest_shares(grid, cost)
    # How large a share each term can take depends on the model's fitted coefficients (re-profiles
    # move them): the context term reaches 28-36% of a window with the long decodes (a measured fit).
    assert shares["ctx"] > 0.25 and shares["tokens"] > 0.3 and shares["steps"] > 0.3, shares
    # Prefill attention grows with the prompt's square, so its largest share is a single prompt as
    # long as the engine takes; how large that is depends on the model's own len2_ms (15-35% here).
    longest = {"repeats": 1, "prefill": [[1, MAX_LEN - 48]]}
    assert shares["attn"] >= _largest_shares(longest, cost)["attn"] - 1e-9, shares
    # without the long decodes, every window is mostly its prefill: the context term's share halves
    without = _largest_shares(dict(grid, decode=[]), cost)["ctx"]
    assert without < 0.2 and shares["ctx"] > 1.8 * without


def test_a_decode_cell_must_give_requests_length_and_outputs():
    from mosaic.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"grid\.decode\.0"):
        grid_option({"repeats": 1, "decode": [[64, 512]]})
    assert grid_cells(grid_option({"repeats": 1, "decode": [[2, 8, 5]]})) == [("2x8->5", "decode", ((8, 5), (8, 5)))]


def test_a_batch_longer_than_the_engine_takes_is_refused_before_measuring():
    from mosaic.core.errors import ConfigError

    assert grid_option({"repeats": 1, "decode": [[1, 1500, 500]]}, max_model_len=2048)
    with pytest.raises(ConfigError, match=r"grid\.decode: a batch of 2100 tokens .* max_model_len 2048"):
        grid_option({"repeats": 1, "decode": [[1, 1600, 500]]}, max_model_len=2048)
    with pytest.raises(ConfigError, match=r"grid\.context_lengths"):
        grid_option({"repeats": 1, "batch_sizes": [1], "context_lengths": [2040], "outputs": [49]}, max_model_len=2048)


def test_a_mixed_cell_is_one_seeded_batch_whose_prefills_share_steps_with_decodes():
    grid = grid_option({"repeats": 1, "mixed": [[96, 16, 1000, 200, 600]], "seed": 3})
    (cell,) = grid_cells(grid)
    assert cell.kind == "mixed" and cell.label == "96x16-1000->200-600" and len(cell.requests) == 96
    assert all(16 <= p <= 1000 and 200 <= o <= 600 for p, o in cell.requests)
    assert len({p for p, _ in cell.requests}) > 48   # drawn, not one length
    # the same batch on every call (every repeat, worker and machine), another with another seed
    assert grid_cells(grid) == [cell]
    assert grid_cells(dict(grid, seed=4))[0].requests != cell.requests
    steps = _replica_steps([(str(i), *r) for i, r in enumerate(cell.requests)], BLOCK, BLOCKS, SEQS, BUDGET)
    # a step that prefills some tokens while it decodes others: more tokens than sequences, and
    # decode context, in the same step; and such steps are many (a request joins as one leaves)
    mixed = [s for s in steps if s[1] > s[0] and s[2] > 0]
    assert len(mixed) >= 32, len(mixed)


def test_a_mixed_cell_with_a_range_upside_down_or_too_long_is_refused():
    from mosaic.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"grid\.mixed: .*\[8, 500, 100, 10, 20\].*low end"):
        grid_option({"repeats": 1, "mixed": [[8, 500, 100, 10, 20]]})
    with pytest.raises(ConfigError, match=r"grid\.mixed\.0"):
        grid_option({"repeats": 1, "mixed": [[8, 100, 500]]})
    with pytest.raises(ConfigError, match=r"grid\.mixed: a batch of 2200 tokens"):
        grid_option({"repeats": 1, "mixed": [[8, 16, 1600, 100, 600]]}, max_model_len=2048)
