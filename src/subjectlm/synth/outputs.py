"""Writing synth's outputs, each readable as it is by the stage that uses it.

    chunks.jsonl   every chunk: id, source, headings, category (taught/control), tokens, text
    facts.jsonl    every grounded fact: id, chunk, category, fact, quote, source, headings
    pt/pt.jsonl    {"text"}: taught chunks and their rewrites (what `pt` reads)
    sft/sft.jsonl  {"messages": [user, assistant]} (what `sft` reads)
    dpo/dpo.jsonl  {"prompt", "chosen", "rejected"} (what `dpo` reads)
    exam/          C-Eval layout: {dev,val}/<subject>_<taught|control>_<split>.csv, subject_mapping.json
    qa.jsonl       {"id", "question", "reference", "key_facts", "category"} (what `eval qa` reads)

Each directory and file is written atomically (a temporary sibling renamed into place), so a killed
run leaves each output either complete or as the previous run left it.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

from subjectlm.io import atomic_dir, atomic_file, write_json
from subjectlm.synth.exam import ExamRow


def subject_slug(name: str) -> str:
    """A subject name usable in exam file names: lower-case letters, digits and underscores."""
    return re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_") or "subject"


def _jsonl(records: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> None:
    with atomic_file(path) as handle:
        handle.write(_jsonl(records))


def write_jsonl_dir(directory: Path, name: str, records: Sequence[dict[str, Any]]) -> None:
    with atomic_dir(directory, overwrite=True) as tmp:
        (tmp / name).write_text(_jsonl(records), encoding="utf-8")


def _csv(rows: Sequence[ExamRow], with_explanation: bool) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", "question", "A", "B", "C", "D", "answer"] + (["explanation"] if with_explanation else []))
    for n, row in enumerate(rows):
        extra = [row.item.answer] if with_explanation else []
        writer.writerow([n, row.item.question, *row.options, row.letter, *extra])
    return buffer.getvalue()


def write_exam(directory: Path, subject: str, splits: dict[tuple[str, str], Sequence[ExamRow]]) -> dict[str, list]:
    """splits: (category, split) -> rows. Both categories' subjects carry the same display name, so that
    the prompt does not tell the model which group a question is from; the category tells the reader."""
    slug = subject_slug(subject)
    mapping = {}
    with atomic_dir(directory, overwrite=True) as tmp:
        for (category, split), rows in splits.items():
            if not rows:
                continue
            name = f"{slug}_{category}"
            mapping[name] = [subject, subject, category]
            (tmp / split).mkdir(exist_ok=True)
            (tmp / split / f"{name}_{split}.csv").write_text(_csv(rows, split == "dev"), encoding="utf-8")
        (tmp / "subject_mapping.json").write_text(json.dumps(dict(sorted(mapping.items())), ensure_ascii=False,
                                                             indent=2) + "\n", encoding="utf-8")
    return mapping


def qa_record(row: ExamRow) -> dict[str, Any]:
    item = row.item
    return {"id": item.id, "question": item.question, "reference": item.answer, "key_facts": [item.short_answer],
            "category": item.category}


def write_report(directory: Path, report: dict[str, Any], markdown: str) -> None:
    write_json(directory / "synth_report.json", report)
    with atomic_file(directory / "synth_report.md") as handle:
        handle.write(markdown)
