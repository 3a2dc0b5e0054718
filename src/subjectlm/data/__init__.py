"""The data layer shared by every stage: read files, validate records, normalize formats.

    load_pt(paths)  -> Loaded(items=[str | Conversation, ...])  pre-training documents (instruction
                                                                records too: pt renders them as text)
    load_sft(paths) -> Loaded(items=[Conversation, ...])        instruction data, any format
    load_dpo(paths) -> Loaded(items=[PreferencePair, ...])      preference pairs

A bad record raises `DataError` listing every problem as `file:line: field: what is wrong`,
unless `skip_invalid=True`: then it is skipped, counted and kept in `Loaded.problems`.
A warning (a UTF-8 BOM) never stops loading; it is kept in `Loaded.warnings`. One file holds one
record format: an alpaca record in a file of sharegpt records is an error naming its line.

    __init__.py  load_pt / load_sft / load_dpo / iter_records: read, normalize, collect problems
    readers.py   files -> raw records with line numbers (.jsonl .json .txt .parquet), fingerprints
    formats.py   record formats (alpaca, sharegpt, messages, preference pairs) -> one shape per kind
    check.py     `subjectlm data check`: counts, lengths, duplicates and every problem
    mix.py       weighted sources (`data: [corpus/, {path: general.jsonl, weight: 0.2}]`): parse and draw
    errors.py    Problem (file:line: field: message), DataError, DataFileNotFoundError
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from subjectlm.data.errors import DataError, Problem
from subjectlm.data.formats import (
    Conversation,
    PreferencePair,
    RecordError,
    detect_format,
    to_conversation,
    to_document,
    to_preference,
)
from subjectlm.data.readers import RawRecord, expand_paths, files_fingerprint, read_files

__all__ = [
    "Conversation", "DataError", "Loaded", "PreferencePair", "Problem", "expand_paths", "files_fingerprint",
    "iter_pt_documents", "iter_records", "load_dpo", "load_pt", "load_sft", "KINDS",
]


@dataclasses.dataclass
class Loaded:
    items: list[Any]
    problems: list[Problem]  # the skipped records
    files: list[Path]
    warnings: list[Problem] = dataclasses.field(default_factory=list)  # read anyway: a BOM

    def summary(self) -> str:
        text = f"{len(self.items)} records from {len(self.files)} file(s)"
        if self.problems:
            text += f", {len(self.problems)} skipped as invalid"
        if self.warnings:
            text += f", {len(self.warnings)} warning(s) (see `subjectlm data check`)"
        return text


INSTRUCTION_KEYS = ("instruction", "conversations", "messages")  # what marks an alpaca/sharegpt/messages record


def _is_instruction(value: Any) -> bool:
    return isinstance(value, dict) and "text" not in value and any(k in value for k in INSTRUCTION_KEYS)


def _to_pt(raw: RawRecord) -> str | Conversation:
    """A document: text, or an instruction record as a Conversation (pt renders it through the chat template)."""
    if _is_instruction(raw.value):
        return to_conversation(raw.value, raw.source)
    text = to_document(raw.value)
    if not text.strip():
        raise RecordError("text", "empty")
    return text


KINDS: dict[str, Callable[[RawRecord], Any]] = {
    "pt": _to_pt,
    "sft": lambda raw: to_conversation(raw.value, raw.source),
    "dpo": lambda raw: to_preference(raw.value, raw.source),
}


def record_format(kind: str, value: Any) -> str | None:
    """The layout of one instruction or preference record (alpaca, sharegpt, messages, prompt/chosen/rejected)."""
    if not isinstance(value, dict):
        return None
    if kind == "pt":  # a text record, or an instruction record rendered as text
        return detect_format(value) if _is_instruction(value) else "text"
    if kind == "sft":
        try:
            return detect_format(value)
        except RecordError:
            return None  # the conversion names what is missing
    return "alpaca" if "prompt" not in value and "instruction" in value else "prompt/chosen/rejected"


def iter_records(kind: str, paths: Iterable[str | Path], txt_mode: str = "auto") -> Iterator[tuple[RawRecord | None, Any, Problem | None]]:
    """(raw, normalized, None) for each good record and (raw|None, None, problem) for each bad one
    or warning (`problem.warning`)."""
    convert = KINDS[kind]
    first_format: dict[str, tuple[str, int]] = {}  # file -> (format, line) of its first record
    for item in read_files(paths, txt_mode):
        if isinstance(item, Problem):
            yield None, None, item
            continue
        if kind != "pt" and isinstance(item.value, str):
            yield item, None, Problem(item.file, item.line, "record", f"plain text is pre-training data, not {kind} data")
            continue
        fmt = record_format(kind, item.value)
        if fmt is not None:
            first, line = first_format.setdefault(item.file, (fmt, item.line))
            if fmt != first:
                yield item, None, Problem(item.file, item.line, "record",
                                          f"{fmt} record in a file whose first record (line {line}) is {first}: "
                                          "keep one format per file")
                continue
        try:
            yield item, convert(item), None
        except RecordError as exc:
            yield item, None, Problem(item.file, item.line, exc.field, exc.message)


def _load(kind: str, paths: Iterable[str | Path], skip_invalid: bool, txt_mode: str = "auto") -> Loaded:
    paths = list(paths)
    files = expand_paths(paths)
    items, problems, warnings = [], [], []
    for _raw, value, problem in iter_records(kind, files, txt_mode):
        if problem is not None:
            (warnings if problem.warning else problems).append(problem)
        else:
            items.append(value)
    if problems and not skip_invalid:
        raise DataError(problems)
    if not items:
        raise DataError(problems or [Problem(", ".join(map(str, paths)), None, "file", f"no {kind} records found")])
    return Loaded(items, problems, files, warnings)


def load_pt(paths: Iterable[str | Path], skip_invalid: bool = False, txt_mode: str = "auto") -> Loaded:
    return _load("pt", paths, skip_invalid, txt_mode)


def load_sft(paths: Iterable[str | Path], skip_invalid: bool = False) -> Loaded:
    return _load("sft", paths, skip_invalid)


def load_dpo(paths: Iterable[str | Path], skip_invalid: bool = False) -> Loaded:
    return _load("dpo", paths, skip_invalid)


def iter_pt_documents(paths: Iterable[str | Path], txt_mode: str = "auto", skip_invalid: bool = False,
                      on_skip: Callable[[Problem], None] | None = None) -> Iterator[str | Conversation]:
    """Stream documents for corpora larger than memory (instruction records as Conversations, which pt
    renders as text); a bad record raises unless skip_invalid."""
    for _raw, value, problem in iter_records("pt", paths, txt_mode):
        if problem is not None and problem.warning:
            continue  # read anyway; `data check` lists it
        if problem is not None:
            if not skip_invalid:
                raise DataError([problem])
            if on_skip:
                on_skip(problem)
            continue
        yield value
