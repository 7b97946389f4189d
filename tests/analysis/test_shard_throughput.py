"""Fig. 3b (mosaic/analysis/shard_throughput.py): one engine's throughput per shard size, on the simulator."""
import pytest

from mosaic.analysis import shard_throughput as st


@pytest.fixture(scope="module")
def rows():
    return st.shard_rows("synth_gpqa", [4, 16, 10_000])


def test_every_model_gets_its_shards_its_dp_shard_and_its_whole_share(rows):
    for model in {r["model"] for r in rows}:
        mine = {r["point"]: r for r in rows if r["model"] == model}
        n_m = mine["full"]["n_model_prompts"]
        assert mine["full"]["shard_size"] == n_m and mine["full"]["rel_to_full"] == 1.0
        assert mine["dp_shard"]["shard_size"] == -(-n_m // 4)
        sizes = [r["shard_size"] for r in rows if r["model"] == model and r["point"] == "shard"]
        assert 10_000 not in sizes and all(s <= n_m for s in sizes)   # no shard larger than the model's share


def test_throughput_is_tokens_over_generation_time(rows):
    for r in rows:
        assert r["generate_s"] > 0 and r["output_tokens"] > 0
        assert r["tokens_per_s"] == pytest.approx(r["output_tokens"] / r["generate_s"])


def test_a_bigger_batch_is_not_slower_per_token(rows):
    # Continuous batching: 16 prompts together decode faster per token than 4.
    for model in {r["model"] for r in rows}:
        by = {r["shard_size"]: r["tokens_per_s"] for r in rows if r["model"] == model and r["point"] == "shard"}
        if 4 in by and 16 in by:
            assert by[16] > by[4]


def test_markdown_names_every_model(rows):
    md = st.render(rows)
    assert all(m in md for m in {r["model"] for r in rows}) and "137-239" in md


def test_a_model_with_fewer_prompts_than_workers_is_one_point(tmp_path):
    # synth_small: Exaone has one prompt, so its DP shard is its whole share.
    from mosaic.analysis.shard_throughput import write

    md = write(tmp_path, "synth_small", [4])
    exaone = next(line for line in md.splitlines() if line.startswith("| Exaone |"))
    assert exaone.split(" | ")[2] == "1" and "(1)" in exaone
    assert (tmp_path / "figure_data" / "fig3b_shard_throughput.csv").exists()
