"""Prompt templates for real engines (Symbolic-MoE style): experts answer, the aggregator reads
every expert's response and writes the final answer. Both end with a parsable final letter."""
from __future__ import annotations

from typing import Sequence

# Tokens of instructions wrapped around a question and the responses an aggregator (or an agent
# graph's successor) reads, where the prompt is sized rather than written out.
AGGREGATOR_TEMPLATE_TOKENS = 64

EXPERT = ("Answer the following multiple-choice question. Think step by step, then finish with "
          "\"The answer is (X)\" where X is the letter of the correct option.\n\n{question}\n")
AGGREGATOR = ("You are given a multiple-choice question and responses from several models. Critically "
              "evaluate them, synthesise a single correct answer, and finish with \"The answer is (X)\".\n\n"
              "Question: {question}\n\n{responses}")


def expert_prompt(question: str) -> str:
    return EXPERT.format(question=question)


def aggregator_prompt(question: str | None, responses: Sequence[tuple[str, str]]) -> str:
    body = "".join(f"Response {i} ({model}):\n{text}\n\n" for i, (model, text) in enumerate(responses, 1))
    return AGGREGATOR.format(question=question or "(question text not available)", responses=body)
