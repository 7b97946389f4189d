"""Data-quality report of a trace-driven workload: what the loader found wrong in its inputs.

The trace loader keeps going past imperfect records (an unparsed answer is a record that votes for
nothing; of duplicate questions the smallest id wins; a question some model never answered leaves
the workload), because real evaluation dumps all have some. This module counts each of those so a
run states them (a warning, and `data_report` in summary.json) instead of absorbing them silently.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Protocol, Sequence

# Raw answer values kept as examples per file: enough to see what the extractor choked on.
_EXAMPLES = 3


class _Record(Protocol):  # the fields of traces.TraceRecord this module reads
    key: str
    record_id: str
    gold: str | None
    answer: str | None
    answer_issue: str
    text_missing: bool
    zero_tokens: bool


@dataclass(frozen=True)
class SourceStats:
    """What one trace file holds that a replay cannot use as is. Counts are records unless named."""

    path: str
    records: int
    answers_missing: int        # null/empty extracted answer: the model's output had none
    answers_unparseable: int    # an answer that is not one of the question's option letters
    unparseable_examples: tuple[str, ...]
    texts_missing: int          # null/empty output text (its length counts as 0 tokens -> 1)
    zero_token_counts: int      # a recorded token count of 0, replayed as 1 token
    gold_unparseable: int       # a gold answer that is not an option letter
    duplicate_questions: int    # question texts (with options) recorded more than once
    conflicting_gold: int       # ... of which the copies disagree on the gold answer
    conflicting_answers: int    # ... of which the copies disagree on the model's answer
    duplicate_ids: int          # record ids used more than once
    conflicting_ids: int        # ... of which the copies differ in question, gold or answer (ids, not records)


def source_stats(path: str, records: Sequence[_Record]) -> SourceStats:
    by_key: dict[str, list[_Record]] = defaultdict(list)
    by_id: dict[str, list[_Record]] = defaultdict(list)
    for r in records:
        by_key[r.key].append(r)
        by_id[r.record_id].append(r)
    dup_keys = [g for g in by_key.values() if len(g) > 1]
    dup_ids = [g for g in by_id.values() if len(g) > 1]
    unparseable = [r.answer_issue for r in records if r.answer_issue.startswith("unparseable")]
    return SourceStats(
        path=path, records=len(records),
        answers_missing=sum(r.answer_issue == "missing" for r in records),
        answers_unparseable=len(unparseable),
        unparseable_examples=tuple(sorted(set(unparseable)))[:_EXAMPLES],
        texts_missing=sum(r.text_missing for r in records),
        zero_token_counts=sum(r.zero_tokens for r in records),
        gold_unparseable=sum(r.gold is None for r in records),
        duplicate_questions=len(dup_keys),
        conflicting_gold=sum(len({r.gold for r in g}) > 1 for g in dup_keys),
        conflicting_answers=sum(len({r.answer for r in g}) > 1 for g in dup_keys),
        duplicate_ids=len(dup_ids),
        conflicting_ids=sum(len({(r.key, r.gold, r.answer) for r in g}) > 1 for g in dup_ids))


@dataclass(frozen=True)
class DataReport:
    """One trace workload's input quality: per source file, and the question intersection."""

    questions: int                      # in the test question file
    answered_by_all: int                # ... with a record in every expert's and the aggregator's trace
    missing_per_source: dict[str, int]  # test questions a source has no record for (why they dropped)
    no_vote_per_source: dict[str, int]  # of the answered_by_all questions, records with no usable answer
    sources: dict[str, SourceStats] = field(default_factory=dict)
    # answered_by_all questions that are also in the calibration (train) file: held out of the test
    # set, so no question is both calibrated on and scored
    in_calibration: int = 0

    @property
    def dropped(self) -> int:
        return self.questions - self.answered_by_all

    def problems(self) -> list[str]:
        """Short phrases, one per kind of problem found; empty when the inputs are clean."""
        def per(counts: Mapping[str, int]) -> str:
            values = set(counts.values())
            if len(counts) > 1 and len(values) == 1:  # the usual case for a shared question set
                return f"each of the {len(counts)} sources {values.pop()}"
            return ", ".join(f"{k} {v}" for k, v in counts.items() if v)

        out = []
        if self.dropped:
            out.append(f"{self.dropped} of {self.questions} test questions dropped, not answered by every "
                       f"model (missing: {per(self.missing_per_source)})")
        if self.in_calibration:
            out.append(f"{self.in_calibration} of the {self.answered_by_all} answered test questions are also in "
                       "the calibration file, held out of the test set")
        if any(self.no_vote_per_source.values()):
            out.append(f"answers that vote for nothing among the {self.answered_by_all} kept: "
                       f"{per(self.no_vote_per_source)}")
        for label, attr in (("unparseable answers", "answers_unparseable"), ("null/empty texts", "texts_missing"),
                            ("token counts of 0, replayed as 1", "zero_token_counts"),
                            ("unparseable gold answers", "gold_unparseable"),
                            ("duplicate questions with conflicting gold", "conflicting_gold"),
                            ("duplicate questions with conflicting answers (the lowest record id's kept)",
                             "conflicting_answers"),
                            ("ids shared by records that differ", "conflicting_ids")):
            counts = {name: getattr(s, attr) for name, s in self.sources.items()}
            if any(counts.values()):
                out.append(f"{label} in the files: {per(counts)}")
        return out

    def headline(self) -> str:
        """The problems as one line, for the run's warning."""
        return "; ".join(self.problems())


def build_report(questions: Sequence[str], answered: Iterable[int], sources: Mapping[str, SourceStats],
                 records: Mapping[str, Mapping[str, _Record]], in_calibration: int = 0) -> DataReport:
    """`questions`: the test file's question keys; `answered`: indices of those every source covers;
    `records`: per source, its records by question key (as the workload reads them)."""
    answered = list(answered)
    missing = {name: sum(k not in by_key for k in questions) for name, by_key in records.items()}
    no_vote = {name: sum(by_key[questions[i]].answer is None for i in answered) for name, by_key in records.items()}
    return DataReport(questions=len(questions), answered_by_all=len(answered), missing_per_source=missing,
                      no_vote_per_source=no_vote, sources=dict(sources), in_calibration=in_calibration)
