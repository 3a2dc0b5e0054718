"""Closed-book QA: the questions, the prompts, and the scores of an answer against its reference.

Input, JSON lines (or a JSON array), one question per record, read through the data layer so a
bad record is reported as `file:line: field: problem`:

    {"id": "harrow-1", "question": "What kind of volcano is Mount Harrow?",
     "reference": "A stratovolcano, 1,414 m high.", "key_facts": ["stratovolcano", "1,414 m"]}

`id` is optional (default: a hash of the question) and must be unique; `key_facts` is optional.
An exam directory (C-Eval, CMMLU or MMLU layout) works too: each answered question of the split
becomes a QA item with the question alone (no options) and the correct option's text as reference.

Each answer is scored by subjectlm/scoring/text.py: exact match and contains-match of the
normalised reference (as SQuAD/CMRC normalise: lowercase, punctuation incl. Chinese removed,
English articles removed; CJK per character, other text per word), token-F1, and key-fact recall
when key facts are given. The runner (runner.py) adds the teacher-forced mean log-likelihood
of the reference (its tokens after the prompt's).
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Sequence

from subjectlm.scoring.text import answer_tokens

# --- prompts (pure; exact strings pinned by tests) ---------------------------------------------

PLAIN_QUESTION = "Question: "
PLAIN_ANSWER = "\nAnswer:"
PLAIN_STOP = "\nQuestion:"  # a model without a chat template that starts a new question has finished its answer


def qa_messages(question: str) -> list[dict[str, str]]:
    """The chat turn asked of a model with a chat template: the question alone."""
    return [{"role": "user", "content": question.strip()}]


def plain_prompt(question: str) -> str:
    """The prompt of a model without a chat template; the reference follows it after a space."""
    return f"{PLAIN_QUESTION}{question.strip()}{PLAIN_ANSWER}"


def plain_continuation(reference: str) -> str:
    return " " + reference.strip()


# --- data -------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class QAItem:
    id: str
    question: str
    reference: str
    key_facts: tuple[str, ...] = ()
    source: str = ""  # file:line, for messages


def question_id(question: str) -> str:
    """The id of a question that has none: stable across files and line orders."""
    return "q-" + hashlib.sha256(question.encode("utf-8")).hexdigest()[:10]


def _text_field(value: dict, key: str) -> str | None:
    field = value.get(key)
    return field.strip() if isinstance(field, str) and field.strip() else None


def read_qa_file(path: str | Path) -> list[QAItem]:
    """QA items of a JSON-lines/JSON file; every bad record is reported (file:line: field: problem)."""
    from subjectlm.data.errors import DataError, DataFileNotFoundError, Problem
    from subjectlm.data.readers import read_files

    if not Path(path).exists():
        raise DataFileNotFoundError(f"{path}: no such QA file or exam directory")
    items: list[QAItem] = []
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    for rec in read_files([path]):
        if isinstance(rec, Problem):
            problems.append(rec)
            continue
        value, bad = rec.value, len(problems)
        if not isinstance(value, dict):
            problems.append(Problem(rec.file, rec.line, "record", "expected a JSON object"))
            continue
        question, reference = _text_field(value, "question"), _text_field(value, "reference")
        for key, text in (("question", question), ("reference", reference)):
            if text is None:
                problems.append(Problem(rec.file, rec.line, key, "missing or empty (a non-empty string is required)"))
        if reference is not None and not answer_tokens(reference):
            problems.append(Problem(rec.file, rec.line, "reference", "only punctuation: nothing left to score"))
        facts = value.get("key_facts") or []
        if not isinstance(facts, list) or not all(isinstance(f, str) and answer_tokens(f) for f in facts):
            problems.append(Problem(rec.file, rec.line, "key_facts", "must be a list of non-empty strings"))
        raw_id = value.get("id")
        if raw_id is not None and (not isinstance(raw_id, (str, int)) or isinstance(raw_id, bool) or not str(raw_id).strip()):
            problems.append(Problem(rec.file, rec.line, "id", "must be a non-empty string or an integer"))
        if len(problems) > bad:
            continue
        qid = str(raw_id).strip() if raw_id is not None else question_id(question)
        if qid in seen:
            problems.append(Problem(rec.file, rec.line, "id", f"{qid!r} is also used at {seen[qid]}"))
            continue
        seen[qid] = rec.source
        items.append(QAItem(qid, question, reference, tuple(f.strip() for f in facts), rec.source))
    if problems:
        raise DataError(problems)
    if not items:
        raise DataError([Problem(str(path), None, "file", "no QA records")])
    return items


def items_from_exam(data_dir: str | Path, fmt: str = "auto", split: str = "val",
                    subjects: Sequence[str] | None = None) -> tuple[list[QAItem], int]:
    """QA items from an exam split (question alone, correct option as reference) and how many
    questions were skipped because the split has no answer for them (a test split)."""
    from subjectlm.eval.exam.directory import read_exam
    from subjectlm.eval.exam.prompts import LETTERS

    _fmt, exams = read_exam(data_dir, fmt, split, list(subjects) if subjects else None)
    items, skipped = [], 0
    for exam in exams:
        for doc in exam.docs:
            if doc.answer is None or not answer_tokens(doc.options[LETTERS.index(doc.answer)]):
                skipped += 1
                continue
            items.append(QAItem(f"{exam.info.handle}/{doc.id}", doc.question.strip(),
                                doc.options[LETTERS.index(doc.answer)].strip(), (), f"{exam.info.handle}:{doc.id}"))
    return items, skipped
