"""Tiny Llama-architecture models for machines with no GPU and no internet.

Each model is a config.json plus a tokenizer built locally with `tokenizers`; vLLM loads it with
load_format="dummy" (random weights), so nothing is downloaded. Sizes differ so that the models
have different speeds, like a real expert pool. Head dim is 64: vLLM's CPU attention rejects 16.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

VOCAB = 512
SPECIAL = ["<unk>", "<s>", "</s>", "<pad>"]


def default_cache_dir() -> Path:
    return Path(os.environ.get("MOSAIC_CACHE", Path.home() / ".cache" / "mosaic")) / "tiny_models"


def _write_tokenizer(directory: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = [f"w{i}" for i in range(VOCAB - len(SPECIAL) - 40)] + list("abcdefghijklmnopqrstuvwxyz0123456789().")
    vocab = {w: i for i, w in enumerate(SPECIAL + words)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece(prefix="##")
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                            pad_token="<pad>").save_pretrained(directory)


def ensure_tiny_model(name: str, hidden_size: int, layers: int, heads: int, kv_heads: int,
                      intermediate_size: int, max_position: int = 4096, cache_dir: Path | None = None) -> Path:
    """Create (once) and return the directory of a tiny Llama model."""
    if hidden_size != heads * 64:
        raise ValueError(f"tiny model {name}: hidden_size must be heads x 64 (vLLM CPU needs head dim 64)")
    directory = (cache_dir or default_cache_dir()) / name
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden_size,
              "intermediate_size": intermediate_size, "num_attention_heads": heads, "num_key_value_heads": kv_heads,
              "head_dim": 64, "num_hidden_layers": layers, "vocab_size": VOCAB,
              "max_position_embeddings": max_position, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
              "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 3, "tie_word_embeddings": False,
              "torch_dtype": "bfloat16"}
    cfg_path = directory / "config.json"
    if cfg_path.exists() and json.loads(cfg_path.read_text()) == config and (directory / "tokenizer.json").exists():
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    _write_tokenizer(directory)
    cfg_path.write_text(json.dumps(config, indent=1))
    return directory


def kv_bytes_per_token(layers: int, kv_heads: int, dtype_bytes: int = 2) -> int:
    return 2 * layers * kv_heads * 64 * dtype_bytes
