"""A stand-in for the part of vLLM's engine API that mosaic/backends/vllm/worker.py uses, for tests that run
the vLLM backend's worker processes where vLLM is not installed: put tests/fake_vllm first on
PYTHONPATH. Every request "generates" exactly max_tokens tokens ending in "the answer is (A)".
FAKE_VLLM_FAIL=<text> makes engines whose model path contains <text> fail to start ("*": all).
FAKE_VLLM_DIE=<text>:<n> makes the process of an engine whose model path contains <text> exit (code 3,
without a word, as a crashed engine's) at its n-th step; with FAKE_VLLM_DIE_ONE=<dir> only the first
such engine to claim <dir>/died does (one replica of a model, the others live on).
FAKE_VLLM_HANG_DIR=<dir> makes every engine start a child process (as vLLM starts EngineCore), write
{"worker": pid, "engine": child pid} to <dir>/<pid>.json and then never finish a request."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

__version__ = "0.0-fake"


@dataclass
class SamplingParams:
    max_tokens: int = 16
    ignore_eos: bool = False
    temperature: float = 1.0
    logprobs: int | None = None


@dataclass
class EngineArgs:
    model: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __init__(self, model: str, **kwargs: Any):
        self.model, self.kwargs = model, kwargs


@dataclass
class _Completion:
    token_ids: list[int]
    text: str
    cumulative_logprob: float | None = None


class _Tokenizer:
    def encode(self, text: str) -> list[int]:
        return [4 + len(w) % 500 for w in text.split()]


@dataclass
class _RequestOutput:
    request_id: str
    outputs: list[_Completion]
    finished: bool


class LLMEngine:
    def __init__(self) -> None:
        self.pending: list[tuple[str, SamplingParams]] = []
        self.die_at: int | None = None
        self.steps = 0

    @classmethod
    def from_engine_args(cls, args: EngineArgs) -> "LLMEngine":
        fail = os.environ.get("FAKE_VLLM_FAIL", "")
        if fail == "*" or (fail and fail in args.model):
            raise RuntimeError(f"fake engine refuses to start {args.model}")
        engine = cls()
        die = os.environ.get("FAKE_VLLM_DIE", "")
        if die and die.rsplit(":", 1)[0] in args.model:
            engine.die_at = int(die.rsplit(":", 1)[1])
            one = os.environ.get("FAKE_VLLM_DIE_ONE")
            if one:
                try:
                    os.close(os.open(os.path.join(one, "died"), os.O_CREAT | os.O_EXCL))
                except FileExistsError:
                    engine.die_at = None
        hang_dir = os.environ.get("FAKE_VLLM_HANG_DIR")
        if hang_dir:
            engine.core = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
            record = json.dumps({"worker": os.getpid(), "engine": engine.core.pid})
            tmp = os.path.join(hang_dir, f"{os.getpid()}.tmp")
            with open(tmp, "w") as f:
                f.write(record)
            os.replace(tmp, os.path.join(hang_dir, f"{os.getpid()}.json"))
        return engine

    def add_request(self, request_id: str, prompt: Any, params: SamplingParams) -> None:
        self.pending.append((request_id, params))

    def get_tokenizer(self) -> _Tokenizer:
        return _Tokenizer()

    def abort_request(self, request_ids: list[str]) -> None:
        self.pending = [(rid, p) for rid, p in self.pending if rid not in request_ids]

    def has_unfinished_requests(self) -> bool:
        return bool(self.pending)

    def step(self) -> list[_RequestOutput]:
        while os.environ.get("FAKE_VLLM_HANG_DIR"):
            time.sleep(1)
        self.steps += 1
        if self.steps == self.die_at:
            os._exit(3)
        done, self.pending = self.pending, []
        # Each token's probability 0.9 where logprobs are asked for (natural generation).
        return [_RequestOutput(rid, [_Completion(list(range(p.max_tokens)), "so the answer is (A)",
                                                 p.max_tokens * -0.1053605 if getattr(p, "logprobs", None) else None)],
                               True) for rid, p in done]
