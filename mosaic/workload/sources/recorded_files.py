"""Readers of recorded model outputs (traces) and of the question files they are matched to.

Formats: `mmlu_pro_zip` (MMLU-Pro eval zips), `medagents_json` (MedAgents outputs) and
`mosaic_json` (traces recorded by `mosaic record`, mosaic/run/record.py). Parsed files are
cached per process on (path, mtime), since a sweep builds one workload many times."""
from __future__ import annotations

import ast
import functools
import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence


from mosaic.core.errors import ConfigError
from mosaic.core.serde import loads_data
from mosaic.profiles.schema import MAX_CONTEXT_TOKENS, number, show
from mosaic.workload.sources.data_quality import SourceStats, source_stats
from mosaic.workload.sources.question_files import LETTERS, gold_option, load_questions
from mosaic.workload.tokens import estimate_tokens as tokens_from_text

# A recorded output longer than this (2M tokens, 64x the longest context the traces were made with)
# is a corrupt record, not an output.
MAX_OUTPUT_TOKENS = MAX_CONTEXT_TOKENS
# MMLU-Pro's CoT prompt asks for "The answer is (X)"; an output without it that also stops
# mid-sentence ran into max_tokens (right-censored), which the profile fit must know.
_FINAL_ANSWER = re.compile(r"answer is \(?[A-P]\b", re.IGNORECASE)
# The output text's field: this project's name first, then upstream TIGER-Lab MMLU-Pro's (its
# evaluate_from_*.py scripts write `model_outputs`).
TEXT_FIELDS = ("generated_text", "model_outputs")



def normalise(text: str) -> str:
    return re.sub(r"[^0-9a-z]", "", text.lower())


def question_key(question: str, options: Sequence[str]) -> str:
    """The key a question file's "stem The options are: (A) ..." text also normalises to."""
    opts = " ".join(f"({LETTERS[i]}) {o}" for i, o in enumerate(options))
    return normalise(f"{question} The options are: {opts}")


def _letter(value: Any, n_options: int) -> str | None:
    """An extracted answer as a letter, or None (no vote) when absent or not a valid option."""
    if isinstance(value, str) and len(value.strip()) == 1 and value.strip().upper() in LETTERS[:n_options]:
        return value.strip().upper()
    return None


def _answer(value: Any, n_options: int) -> tuple[str | None, str]:
    """(letter or None, issue) with issue "" (parsed), "missing" (null or empty; upstream scripts also
    write str(None)) or "unparseable: <value>" (not one of the question's option letters)."""
    letter = _letter(value, n_options)
    if letter is not None:
        return letter, ""
    if value is None or str(value).strip() in ("", "None", "null"):
        return None, "missing"
    return None, f"unparseable: {str(value)[:40]!r}"


@dataclass(frozen=True)
class TraceRecord:
    key: str                 # normalised question + options text
    record_id: str
    category: str | None
    n_options: int
    gold: str | None
    answer: str | None       # None: the model gave no parseable answer
    output_tokens: int
    censored: bool           # the generation hit max_tokens: the true length is longer
    answer_issue: str = ""   # why `answer` is None: "missing" | "unparseable: <raw value>" (see _answer)
    text_missing: bool = False  # the output text was null or empty
    zero_tokens: bool = False   # the recorded token count was 0 (an empty completion), replayed as 1


# ---------------------------------------------------------------- readers: path -> records

def _field(rec: Any, name: str, path: Path, i: int) -> Any:
    if not isinstance(rec, dict) or name not in rec:
        raise ConfigError(f"{path}: record {i} has no field '{name}'; every record of this format needs it")
    return rec[name]


def _json_list(text: str | bytes, path: Path) -> list:
    try:
        data = loads_data(text)
    except ValueError as e:   # not JSON, not UTF-8, a key twice, nested too deep
        raise ConfigError(f"{path}: not valid JSON ({e}); point the file field at an unmodified trace") from None
    if not isinstance(data, list):
        raise ConfigError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
    return data


def _json_file(path: Path) -> list:
    """A trace file that is a JSON list of records."""
    try:
        return _json_list(path.read_bytes(), path)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e})") from None


def _question_id(value: Any, path: Path, i: int) -> str:
    """MMLU-Pro ids are non-negative integers; zero-padded so duplicates resolve by numeric order."""
    if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit())) \
            or int(value) < 0:
        raise ConfigError(f"{path}: record {i} field 'question_id' is {value!r}, not a non-negative integer; "
                          "replace the file with an unmodified MMLU-Pro trace")
    return f"{int(value):08d}"


def _text(r: Any, path: Path, i: int) -> Any:
    for name in TEXT_FIELDS:
        if isinstance(r, dict) and name in r:
            return r[name]
    raise ConfigError(f"{path}: record {i} has no field 'generated_text' (or upstream's 'model_outputs'); "
                      "every record of this format needs one")


def read_mmlu_pro_zip(path: Path) -> tuple[TraceRecord, ...]:
    """MMLU-Pro evaluation outputs: a zip holding one JSON list of question records."""
    try:
        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist() if n.endswith(".json")]
            if len(names) != 1:
                raise ConfigError(f"{path}: expected exactly one .json file in the zip, found {names}")
            data = _json_list(z.read(names[0]), path)
    # A damaged member fails only when read: a bad deflate stream (zlib.error), a CRC mismatch
    # (BadZipFile), or a stream cut short (EOFError).
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
        raise ConfigError(f"{path}: not a readable zip ({type(e).__name__}: {e}); format mmlu_pro_zip needs "
                          f"an intact zip: replace the file with an unmodified copy, or, if it is another "
                          f"format, set its format (one of {sorted(READERS)})") from None
    out = []
    for i, r in enumerate(data):
        opts = _field(r, "options", path, i)
        if not isinstance(opts, list):
            raise ConfigError(f"{path}: record {i} field 'options' must be a list of option texts")
        raw_text = _text(r, path, i)
        text = raw_text if isinstance(raw_text, str) else ""
        tokens = tokens_from_text(text)
        if tokens > MAX_OUTPUT_TOKENS:
            raise ConfigError(f"{path}: record {i} field '{TEXT_FIELDS[0] if TEXT_FIELDS[0] in r else TEXT_FIELDS[1]}' "
                              f"holds {len(text)} characters, about {tokens} tokens, beyond the {MAX_OUTPUT_TOKENS}-token maximum "
                              "of a recorded output; replace the file with an unmodified trace")
        n = len(opts)
        answer, issue = _answer(_field(r, "pred", path, i), n)
        out.append(TraceRecord(
            key=question_key(_field(r, "question", path, i), opts),
            record_id=_question_id(_field(r, "question_id", path, i), path, i),
            category=_field(r, "category", path, i), n_options=n,
            gold=_letter(_field(r, "answer", path, i), n), answer=answer,
            output_tokens=tokens,
            censored=not _FINAL_ANSWER.search(text) and not text.rstrip().endswith((".", "!", "?")),
            answer_issue=issue, text_missing=not text.strip()))
    return tuple(out)


def _token_usage(r: dict, path: Path, i: int) -> int:
    usage = _field(r, "token_usage", path, i)
    if isinstance(usage, str):  # some releases store the dict's repr
        try:
            usage = ast.literal_eval(usage)
        except (ValueError, SyntaxError):
            raise ConfigError(f"{path}: record {i} field 'token_usage' is a string but not a dict") from None
    if not isinstance(usage, dict) or "completion_tokens" not in usage:
        raise ConfigError(f"{path}: record {i} field 'token_usage' has no 'completion_tokens'")
    return token_count(usage["completion_tokens"], path, i, "token_usage.completion_tokens")


def _replayed(n: int) -> int:
    """An empty completion (0 tokens) replays as 1: an engine always emits at least one (the
    end-of-sequence token). Each such record is counted in the data report (`zero_tokens`)."""
    return max(1, n)


def token_count(value: Any, path: Path, i: int, field: str) -> int:
    """A recorded token count: an integer in [0, MAX_OUTPUT_TOKENS], anything else a one-line error
    naming file, record and field (never clipped into range)."""
    try:
        n = number(value, integer=True)
    except ValueError as e:
        raise ConfigError(f"{path}: record {i} field '{field}': {e}; a token count is an integer in "
                          f"[0, {MAX_OUTPUT_TOKENS}]") from None
    if not 0 <= n <= MAX_OUTPUT_TOKENS:
        raise ConfigError(f"{path}: record {i} field '{field}' is {show(n)}, not a token count in [0, "
                          f"{MAX_OUTPUT_TOKENS}]; replace the file with an unmodified trace")
    return n


def read_medagents_json(path: Path) -> tuple[TraceRecord, ...]:
    """MedAgentsBench outputs: a JSON list with options as a letter -> text mapping."""
    data = _json_file(path)
    rows = []
    for i, r in enumerate(data):
        opts = _field(r, "options", path, i)
        if not isinstance(opts, dict):
            raise ConfigError(f"{path}: record {i} field 'options' must map letters to texts")
        rows.append((r, list(opts.values()), _token_usage(r, path, i)))
    # max_tokens settings are powers of two: a file whose longest output is one hit its cap there.
    top = max((t for *_, t in rows), default=0)
    cap = top if top >= 512 and top & (top - 1) == 0 else None
    out = []
    for i, (r, opts, tokens) in enumerate(rows):
        n = len(opts)
        answer, issue = _answer(_field(r, "predicted_answer", path, i), n)
        out.append(TraceRecord(
            key=question_key(_field(r, "question", path, i), opts),
            record_id=str(_field(r, "realidx", path, i)), category=None, n_options=n,
            gold=_letter(_field(r, "answer_idx", path, i), n), answer=answer,
            output_tokens=_replayed(tokens), censored=tokens == cap, answer_issue=issue, zero_tokens=tokens == 0))
    return tuple(out)


def read_mosaic_json(path: Path) -> tuple[TraceRecord, ...]:
    """This project's own traces (mosaic record, mosaic/run/record.py): a JSON list with one record
    per question, its text exactly as in the question file it was recorded from (so it joins on
    that file's key), the model's answer, its output tokens as the engine counted them, and whether
    generation hit max_tokens. A request that failed on the engine is kept with its `error`: no
    answer, no usable text."""
    data = _json_file(path)
    out = []
    for i, r in enumerate(data):
        question = _field(r, "question", path, i)
        if not isinstance(question, str) or not question.strip():
            raise ConfigError(f"{path}: record {i} field 'question' must be the question file's non-empty text")
        try:
            n = number(_field(r, "n_options", path, i), integer=True)
        except ValueError:
            n = None
        if n is None or not 2 <= n <= len(LETTERS):
            raise ConfigError(f"{path}: record {i} field 'n_options' is {show(r['n_options'])}, not an integer in "
                              f"[2, {len(LETTERS)}]")
        error = r.get("error")   # the engine's error message; null where the request succeeded
        if not (error is None or error is False or (isinstance(error, str) and error.strip().lower()
                                                      not in ("true", "false", "yes", "no"))):
            raise ConfigError(f"{path}: record {i} field 'error' is {show(error)}; it holds the engine's error "
                              "message, or null where the request succeeded")
        failed = isinstance(error, str) and bool(error.strip())
        censored = r.get("censored", False)
        if not isinstance(censored, bool):
            raise ConfigError(f"{path}: record {i} field 'censored' is {show(censored)}, not true or false (JSON "
                              "booleans, unquoted)")
        answer, issue = (None, "missing") if failed else _answer(r.get("answer"), n)
        text = r.get("text")
        tokens = token_count(_field(r, "output_tokens", path, i), path, i, "output_tokens")
        out.append(TraceRecord(
            key=normalise(question), record_id=str(_field(r, "record_id", path, i)),
            category=r.get("category"), n_options=n, gold=_letter(r.get("gold_answer"), n), answer=answer,
            output_tokens=_replayed(tokens), censored=censored, answer_issue=issue,
            text_missing=failed or not (isinstance(text, str) and text.strip()), zero_tokens=tokens == 0))
    return tuple(out)


READERS: dict[str, Callable[[Path], tuple[TraceRecord, ...]]] = {
    "mmlu_pro_zip": read_mmlu_pro_zip, "medagents_json": read_medagents_json, "mosaic_json": read_mosaic_json}


@functools.lru_cache(maxsize=64)
def _cached(path: str, mtime_ns: int, fmt: str) -> tuple[dict[str, TraceRecord], SourceStats]:
    records = READERS[fmt](Path(path))
    by_key: dict[str, TraceRecord] = {}
    # a question recorded twice: the lowest record id's copy, ids that are numbers compared as numbers
    for r in sorted(records, key=lambda r: (0, int(r.record_id), "") if r.record_id.isdigit() else (1, 0, r.record_id)):
        by_key.setdefault(r.key, r)
    return by_key, source_stats(path, records)


def _load(path: Path, fmt: str, field: str) -> tuple[dict[str, TraceRecord], SourceStats]:
    if fmt not in READERS:
        raise ConfigError(f"{field}: unknown format '{fmt}'; choose one of {sorted(READERS)}")
    try:
        return _cached(str(path), path.stat().st_mtime_ns, fmt)
    except ConfigError as e:  # say which config entry names the bad file
        raise ConfigError(f"{field}: {e}") from None
    except OSError as e:
        raise ConfigError(f"{field}: cannot read {path} ({e}); point it at an existing trace file") from None


def read_trace(path: Path, fmt: str, field: str = "file") -> dict[str, TraceRecord]:
    """Records of one trace file by question key (parsed once per process and file version)."""
    return _load(path, fmt, field)[0]


def trace_stats(path: Path, fmt: str, field: str = "file") -> SourceStats:
    """What the file holds that a replay cannot use as is (see mosaic.workload.sources.data_quality)."""
    return _load(path, fmt, field)[1]


@dataclass(frozen=True)
class QuestionSet:
    keys: tuple[str, ...]
    texts: tuple[str, ...]
    gold: tuple[str, ...]
    categories: tuple[str, ...]


@functools.lru_cache(maxsize=16)
def _questions(path: str, mtime_ns: int) -> QuestionSet:
    data = load_questions(Path(path))
    texts = tuple(r["question"] for r in data)
    golds = tuple(LETTERS[gold_option(r, Path(path), i)[0]] for i, r in enumerate(data))
    return QuestionSet(tuple(normalise(t) for t in texts), texts, golds,
                       tuple(str(r.get("category") or "all") for r in data))


def read_questions(path: Path, field: str = "workload.questions", what: str = "question file") -> QuestionSet:
    load_questions(path, field, what)  # checked with the config field that names it (parse is cached)
    try:
        return _questions(str(path), path.stat().st_mtime_ns)
    except ConfigError as e:
        raise ConfigError(f"{field}: {e}") from None
