"""The documents synth reads: a corpus as `pt` reads it, plus Markdown and PDF.

A .txt or .md file is one document (its paragraphs and `#` headings kept, so that chunks know their
section); a .jsonl/.json/.parquet record is one document (its text as `pt` takes it); a .pdf is one
document of its pages' text through `pypdf` (the optional extra `pdf`). Bad records are errors
naming file:line, as in `pt`: synth would otherwise silently lose a part of the subject.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterable

from subjectlm.data.errors import DataError, DataFileNotFoundError, Problem
from subjectlm.errors import UserError

SUFFIXES = (".txt", ".md", ".jsonl", ".json", ".parquet", ".pdf")


@dataclasses.dataclass(frozen=True)
class Document:
    source: str  # file, or file:line for a record
    text: str


def language(text: str) -> str:
    """`zh` when at least a fifth of the letters are CJK ideographs, else `en`: picks the prompts' language."""
    cjk = sum(1 for ch in text if "\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf")
    letters = sum(1 for ch in text if ch.isalpha())
    return "zh" if letters and cjk / letters >= 0.2 else "en"


def list_files(paths: Iterable[str | Path]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*")
                           if p.is_file() and p.suffix.lower() in SUFFIXES and not p.name.startswith("."))
            if not found:
                raise DataFileNotFoundError(f"{path}: no {', '.join(SUFFIXES)} files in this directory")
            files.extend(found)
        elif path.is_file():
            if path.suffix.lower() not in SUFFIXES:
                raise UserError(f"{path}: unsupported file type {path.suffix!r}; use one of {', '.join(SUFFIXES)}")
            files.append(path)
        else:
            raise DataFileNotFoundError(f"{path}: no such file or directory")
    return files


def _plain_text(path: Path) -> str:
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError([Problem(str(path), line, "file", "not UTF-8: convert the file to UTF-8")]) from None
    return text.replace("\r\n", "\n")


def _pdf_text(path: Path) -> str:
    try:
        from pypdf import PdfReader
    except ImportError:
        raise UserError(f"{path}: reading PDF needs pypdf: pip install 'subjectlm[pdf]'") from None
    try:
        pages = [page.extract_text() or "" for page in PdfReader(str(path)).pages]
    except Exception as exc:  # pypdf raises several types for a damaged or encrypted file
        raise UserError(f"{path}: not a readable PDF: {exc}") from None
    text = "\n\n".join(p.strip() for p in pages if p.strip())
    if not text.strip():
        raise UserError(f"{path}: the PDF has no text layer ({len(pages)} page(s), all images?): run OCR on it "
                        "first (e.g. ocrmypdf) or give its text as .txt")
    return text


def _records(path: Path) -> list[Document]:
    from subjectlm.data import iter_records

    documents, problems = [], []
    for raw, text, problem in iter_records("pt", [path]):
        if problem is not None and not problem.warning:
            problems.append(problem)
        elif problem is None:
            documents.append(Document(raw.source, text))
    if problems:  # a bad record is an error naming file:line, as in `pt`
        raise DataError(problems)
    return documents


def read_documents(paths: Iterable[str | Path]) -> list[Document]:
    """Every document, in file order; an empty text file is an error naming it."""
    documents: list[Document] = []
    for path in list_files(paths):
        suffix = path.suffix.lower()
        if suffix in (".txt", ".md"):
            text = _plain_text(path)
            if not text.strip():
                raise DataError([Problem(str(path), None, "file", "empty file: no text")])
            documents.append(Document(str(path), text))
        elif suffix == ".pdf":
            documents.append(Document(str(path), _pdf_text(path)))
        else:
            documents.extend(_records(path))
    return documents
