"""What the overlap check compares: training records on one side, evaluation items on the other,
each with the file:line it came from.

Training side: anything pt, sft or dpo read (files or directories; .txt .jsonl .json .parquet),
through the data layer's readers. Every text field of a record counts: a pre-training `text`; every
message of an alpaca, sharegpt or messages record (system, history, instruction + input, output);
a preference pair's prompt, chosen and rejected. A record none of the formats can read is skipped and
counted (it would not be trained on either).

Evaluation side, by what the path is:
    exam directory (C-Eval, CMMLU, MMLU layout)  one item per question of every split present
                                                 (dev, val, test): the question and its options' texts
    .jsonl/.json with `question`                 QA (read as `eval qa` reads it): the question
    .jsonl/.json with `prompt`                   arena prompts (read as the arena reads them): the prompt
    .txt, or .jsonl/.json with `text`            held-out text: windows of `window` tokens, overlapping by
                                                 ngram - 1 so every ngram-token run lies inside one window
A directory that is not an exam is read file by file.

The exam, QA and prompt readers live in the layers above `data` (eval, arena); they are imported
here, inside functions, by an exception declared in pyproject.toml's import-linter contract, so that
a question is read the same way here as where it is asked.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterator, Sequence

from subjectlm.data.errors import DataError, Problem
from subjectlm.data.formats import RecordError, to_conversation, to_document, to_preference
from subjectlm.data.overlap_text import tokens
from subjectlm.data.readers import RawRecord, expand_paths, read_files

EVAL_KINDS = ("exam", "qa", "prompt", "text")


@dataclasses.dataclass(frozen=True)
class EvalItem:
    kind: str         # one of EVAL_KINDS
    source: str       # the path given (exam directory or file): what counts are grouped by
    file: str
    line: int
    tokens: list[str]
    label: str = ""   # subject/id of an exam question, id of a QA item or prompt

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


# --- training ---------------------------------------------------------------------------------

def record_texts(value: object, source: str = "") -> list[str]:
    """Every text of one training record, in order; RecordError when no format reads it."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict) and ("chosen" in value or "rejected" in value):
        pair = to_preference(value, source)
        return [m["content"] for m in pair.prompt] + [pair.chosen, pair.rejected]
    if isinstance(value, dict) and "text" in value:
        return [to_document(value)]
    return [m["content"] for m in to_conversation(value, source).messages]


def training_records(paths: Sequence[str | Path], txt_mode: str = "auto",
                     skipped: list[Problem] | None = None) -> Iterator[tuple[RawRecord, str]]:
    """(record, its text) for every readable training record, in file order; the others go to `skipped`."""
    for item in read_files(paths, txt_mode):
        if isinstance(item, Problem):
            if not item.warning and skipped is not None:
                skipped.append(item)
            continue
        try:
            yield item, "\n".join(record_texts(item.value, item.source))
        except RecordError as exc:
            if skipped is not None:
                skipped.append(Problem(item.file, item.line, exc.field, exc.message))


# --- evaluation -------------------------------------------------------------------------------

def is_exam_dir(path: Path) -> bool:
    return path.is_dir() and ((path / "subject_mapping.json").is_file() or (path / "dev").is_dir())


def eval_items(paths: Sequence[str | Path], window: int, ngram: int) -> list[EvalItem]:
    """Every evaluation item of `paths`; a path nothing can be read from is an error naming it."""
    items: list[EvalItem] = []
    for raw in paths:
        path = Path(raw)
        if is_exam_dir(path):
            items += exam_items(path)
            continue
        for file in expand_paths([path]):
            items += file_items(file, str(raw), window, ngram)
    return items


def exam_items(data_dir: Path) -> list[EvalItem]:
    """One item per question of every split, at its CSV line; an exam with errors is refused as `eval exam` would."""
    from subjectlm.eval.exam.directory import SPLITS, _csv_rows, csv_path, detect_format, list_subjects, scan_docs

    fmt = detect_format(data_dir)
    items: list[EvalItem] = []
    problems: list[Problem] = []
    for split in (s for s in SPLITS if (data_dir / s).is_dir()):
        for subject in list_subjects(data_dir, fmt, split):
            path = csv_path(data_dir, fmt, split, subject)
            docs, found = scan_docs(path, fmt, subject, split)
            errors = [p for p in found if not p.warning]
            if errors:
                problems += errors
                continue
            rows = [line for line, row in _csv_rows(path.read_text(encoding="utf-8-sig"))
                    if row and any(cell.strip() for cell in row)]
            lines = rows if fmt == "mmlu" else rows[1:]  # the header row is not a question
            for doc, line in zip(docs, lines):
                text = "\n".join([doc.question, *doc.options])
                items.append(EvalItem("exam", str(data_dir), str(path), line, tokens(text), f"{subject}/{doc.id}"))
    if problems:
        raise DataError(problems)
    return items


def _first_record(file: Path) -> dict | None:
    for item in read_files([file]):
        if isinstance(item, RawRecord):
            return item.value if isinstance(item.value, dict) else None
    return None


def file_items(file: Path, source: str, window: int, ngram: int) -> list[EvalItem]:
    if file.suffix.lower() == ".txt":
        return text_items(file, source, window, ngram)
    first = _first_record(file)
    if first is not None and "question" in first:
        from subjectlm.eval.qa.items import read_qa_file

        return [EvalItem("qa", source, str(file), int(q.source.rsplit(":", 1)[1]), tokens(q.question), q.id)
                for q in read_qa_file(file)]
    if first is not None and "prompt" in first:
        from subjectlm.arena.records import load_prompts

        prompts = load_prompts(file)
        # load_prompts reads every non-blank line as one prompt (or refuses the file): the lines pair up.
        lines = [n for n, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1) if line.strip()]
        return [EvalItem("prompt", source, str(file), n, tokens(p["prompt"]), p["id"]) for p, n in zip(prompts, lines)]
    if first is not None and "text" in first:
        return text_items(file, source, window, ngram)
    raise DataError([Problem(str(file), None, "record", "not an evaluation file: expected QA records (`question`), "
                             "arena prompts (`prompt`), held-out text (.txt, or records with `text`) or an exam directory")])


def text_items(file: Path, source: str, window: int, ngram: int) -> list[EvalItem]:
    """Held-out text in windows of `window` tokens, each at the line it starts on: a .txt file is one text
    (lines run on into each other); each `text` record of a JSON-lines file is a text of its own."""
    items: list[EvalItem] = []
    words: list[str] = []
    lines: list[int] = []
    for record in read_files([file], txt_mode="line"):
        if isinstance(record, Problem):
            if not record.warning:
                raise DataError([record])
            continue
        if isinstance(record.value, str):
            found = tokens(record.value)
            words += found
            lines += [record.line] * len(found)
            continue
        try:
            found = tokens(to_document(record.value))
        except RecordError as exc:
            raise DataError([Problem(record.file, record.line, exc.field, exc.message)]) from None
        items += windows(found, [record.line] * len(found), window, ngram, str(file), source)
    return windows(words, lines, window, ngram, str(file), source) + items


def window_starts(length: int, window: int, ngram: int) -> list[int]:
    """Starts of windows of `window` tokens over `length` tokens, consecutive windows sharing ngram - 1
    tokens (so any ngram-token run lies inside one), the last one ending at the end."""
    if length == 0:
        return []
    step = max(1, window - ngram + 1)
    starts = list(range(0, max(length - window, 0) + 1, step))
    if starts[-1] + window < length:
        starts.append(length - window)
    return starts


def windows(words: list[str], lines: list[int], window: int, ngram: int, file: str, source: str) -> list[EvalItem]:
    return [EvalItem("text", source, file, lines[s], words[s:s + window], f"tokens {s}-{min(s + window, len(words))}")
            for s in window_starts(len(words), window, ngram)]
