"""Question files (Symbolic-MoE release format): a JSON list of {question, gold_answer[, category]}.

Every record is checked against QuestionRecord before any workload is built: the question is a
non-empty string; the gold answer is one option letter (A-P) or an integer answer ("42", or AIME's
"080 or 081 (both were accepted)"); the category, where given, a non-empty string or null. Other
fields are allowed (and ignored). An error is one line naming the file, the item and the field.
How long a question may be is the engine's business, not the file's: a prompt longer than the
context window is refused (or truncated, counted) before the run starts (mosaic/costs/predict.py)."""
from __future__ import annotations

import logging
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from mosaic.core.errors import ConfigError
from mosaic.core.paths import not_a_file
from mosaic.core.serde import loads_data
from mosaic.profiles.schema import show

log = logging.getLogger(__name__)

LETTERS = "ABCDEFGHIJKLMNOP"
# An integer answer, alone or first of "080 or 081 (both were accepted)" (as questions.integer_frame reads it).
INTEGER_ANSWER = re.compile(r"\s*(\d+)(?:\s*$|\s+or\s+\d+\b)")


_OPTION = re.compile(r"\(([A-P])\)")


def n_options(question: str) -> int:
    """Options of a question file's text ("stem The options are: (A) ... (D) ..."): its last
    option letter's number, 0 if it lists none."""
    return max((ord(o) - 64 for o in _OPTION.findall(question.split("The options are:")[-1])), default=0)


def gold_option(rec: dict[str, Any], path: Path, i: int) -> tuple[int, int]:
    """A lettered question's gold option index and its option count (at least 2, as a question
    listing none is read as a yes/no pair).

    A gold that is none of the question's options could never be scored right, so both the
    questions workload and the trace workloads refuse it here."""
    letter = rec["gold_answer"].strip().upper()
    n = n_options(rec["question"])
    if not (len(letter) == 1 and letter in LETTERS[:max(n, 2)]):
        raise ConfigError(f"{path}: item {i} has gold_answer '{rec['gold_answer']}' outside its "
                          f"options ({n} found in the question text)")
    return ord(letter) - 65, max(n, 2)


class _Lacks(ValueError):
    """The field is absent, not a string, or blank."""


def _text(value: Any) -> Any:
    # blank also when it holds only invisible characters (a zero-width space is not whitespace)
    if not isinstance(value, str) or not any(c.isprintable() and not c.isspace() for c in value):
        raise _Lacks()
    return value


def _gold(value: Any) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ValueError(f"is the number {show(value)}; write it as a string: an option letter A-P or an "
                         f"integer answer in quotes (e.g. \"{value}\")")
    _text(value)
    letter = value.strip().upper()
    if not ((len(letter) == 1 and letter in LETTERS) or INTEGER_ANSWER.match(value)):
        raise ValueError(f"is {show(value)}; expected one option letter A-P or an integer answer (e.g. '42')")
    return value


def _category(value: Any) -> Any:
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise ValueError(f"is {show(value)}; expected a non-empty string or null")
    return value


class QuestionRecord(BaseModel):
    """One item of a question file."""

    model_config = ConfigDict(extra="allow", frozen=True)

    question: Annotated[Any, BeforeValidator(_text)]
    gold_answer: Annotated[Any, BeforeValidator(_gold)]
    category: Annotated[Any, BeforeValidator(_category)] = None


def check_record(rec: Any, path: Path, i: int) -> None:
    """One item against QuestionRecord; a one-line ConfigError naming file, item and field."""
    if not isinstance(rec, dict):
        raise ConfigError(f"{path}: item {i} is not an object (got {show(rec)})")
    try:
        QuestionRecord.model_validate(rec)
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        field = err["loc"][0]
        cause = (err.get("ctx") or {}).get("error")
        if err["type"] == "missing" or isinstance(cause, _Lacks):
            raise ConfigError(f"{path}: item {i} lacks a non-empty string field '{field}'") from None
        raise ConfigError(" ".join(f"{path}: item {i} field '{field}' {cause or err['msg']}".split())) from None


@lru_cache(maxsize=16)
def _read(path: Path, mtime: float) -> tuple[dict[str, Any], ...]:
    try:
        data = loads_data(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: not a readable JSON file ({e})") from None
    if not isinstance(data, list):
        raise ConfigError(f"{path}: expected a JSON list of question objects, got {type(data).__name__}")
    for i, rec in enumerate(data):
        check_record(rec, path, i)
    return tuple(data)


def load_questions(path: Path, field: str = "workload.questions_dir",
                   what: str = "question file") -> tuple[dict[str, Any], ...]:
    """A question file: non-empty JSON list of {question, gold_answer[, category]}; errors name the
    config `field` that points at it, the path and the item."""
    if not path.is_file():
        raise ConfigError(f"{field}: {what} '{path}' {not_a_file(path)}; set {field} to where it is")
    try:
        records = _read(path, path.stat().st_mtime)
    except ConfigError as e:
        raise ConfigError(f"{field}: {e}") from None
    if not records:  # nothing to run, or nothing to calibrate the router and cost model on
        raise ConfigError(f"{field}: {what} {path} is empty (a JSON list with no items); point {field} at "
                          "a file with at least one question")
    repeats = len(records) - len({(r["question"], r.get("gold_answer")) for r in records})
    if repeats:   # real sets have a few (MMLU-Pro's test split: 4): said, not refused
        log.warning("%s %s lists %d question(s) more than once; each copy runs as its own query", what, path, repeats)
    return records
