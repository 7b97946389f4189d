"""Token counts without a tokenizer (none can be downloaded here): a documented chars-per-token rule.

English prose and code average about 4 characters per BPE token for Llama-3/Qwen-class
vocabularies (OpenAI's published rule of thumb for cl100k-style tokenizers).
"""
import math

CHARS_PER_TOKEN = 4.0


def estimate_tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / CHARS_PER_TOKEN))
