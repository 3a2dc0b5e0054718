"""Reading raw records out of files, with line numbers, and finding what is wrong with the bytes.

One reader per file kind: `.jsonl` (JSON lines), `.json` (a JSON array, or JSON lines under a .json
name), `.txt` (one document per line, or per blank-line-separated paragraph), `.parquet`. A reader
yields `RawRecord`s and `Problem`s in file order; it never drops anything silently.
"""

from __future__ import annotations

import codecs
import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, Iterator

from subjectlm.data.errors import Problem

SUFFIXES = (".jsonl", ".json", ".txt", ".parquet")
TXT_MODES = ("auto", "line", "paragraph")


@dataclasses.dataclass(frozen=True)
class RawRecord:
    file: str
    line: int
    value: Any  # a dict for JSON/parquet rows, a str for text documents

    @property
    def source(self) -> str:
        return f"{self.file}:{self.line}"


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files named directly, plus every supported file under a named directory (sorted)."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES and not p.name.startswith("."))
            if not found:
                raise FileNotFoundError(f"{path}: no {', '.join(SUFFIXES)} files in this directory")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or directory")
    return files


def files_fingerprint(paths: Iterable[str | Path]) -> str:
    """A hash of the files' names and contents: the key of any cache derived from them."""
    digest = hashlib.sha256()
    for path in expand_paths(paths):
        digest.update(path.name.encode())
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def guess_encoding(data: bytes) -> str:
    """Name the encoding that bytes which are not UTF-8 most likely are in."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "UTF-16"
    if data[:200].count(b"\x00") > len(data[:200]) // 4:
        return "UTF-16 (no BOM)"
    for name, label in (("gb18030", "GBK/GB18030 (Chinese)"), ("big5", "Big5 (Chinese)"), ("shift_jis", "Shift-JIS (Japanese)")):
        try:
            text = data.decode(name)
        except UnicodeDecodeError:
            continue
        if any("\u4e00" <= ch <= "\u9fff" or "\u3040" <= ch <= "\u30ff" for ch in text):
            return label
    return "Latin-1/Windows-1252"


def _decode(data: bytes, file: str) -> tuple[str | None, list[Problem]]:
    """Decode a whole file as UTF-8, reporting a BOM or the first undecodable line."""
    problems = []
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return None, [Problem(file, 1, "file", "file is UTF-16 (has a UTF-16 BOM); save it as UTF-8")]
    if data.startswith(codecs.BOM_UTF8):
        problems.append(Problem(file, 1, "file", "file starts with a UTF-8 byte-order mark (BOM); save it as UTF-8 without BOM"))
        data = data[len(codecs.BOM_UTF8):]
    try:
        return data.decode("utf-8"), problems
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        problems.append(Problem(file, line, "file", f"not UTF-8 (byte 0x{data[exc.start]:02x}); it looks like {guess_encoding(data)}: convert the file to UTF-8"))
        return None, problems


def _json_lines(text: str, file: str) -> Iterator[RawRecord | Problem]:
    lines = text.split("\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            truncated = exc.pos >= len(line.rstrip()) or "Unterminated" in exc.msg
            what = "truncated JSON (the line ends before the record does)" if truncated else f"invalid JSON: {exc.msg} at column {exc.colno}"
            yield Problem(file, number, "record", what)
            continue
        if not isinstance(value, dict):
            yield Problem(file, number, "record", f"expected a JSON object, got {type(value).__name__}")
            continue
        yield RawRecord(file, number, value)


def _json_array(text: str, file: str) -> Iterator[RawRecord | Problem]:
    """Walk a JSON array element by element so that each record knows its starting line."""
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    line = text.count("\n", 0, pos) + 1
    last = pos

    def skip_ws(i: int) -> int:
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        return i

    index = 0
    while True:
        pos = skip_ws(pos)
        line += text.count("\n", last, pos)
        last = pos
        if pos >= len(text):
            yield Problem(file, line, "file", "truncated JSON: the array is not closed with ]")
            return
        if text[pos] == "]" and index == 0:
            return
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            err_line = text.count("\n", 0, exc.pos) + 1
            truncated = skip_ws(exc.pos) >= len(text) or "Unterminated" in exc.msg
            what = "truncated JSON (the file ends inside this record)" if truncated else f"invalid JSON: {exc.msg} (line {err_line}, column {exc.colno})"
            yield Problem(file, line, f"record {index}", what + "; records after it cannot be read")
            return
        if isinstance(value, dict):
            yield RawRecord(file, line, value)
        else:
            yield Problem(file, line, f"record {index}", f"expected a JSON object, got {type(value).__name__}")
        index += 1
        pos = skip_ws(end)
        line += text.count("\n", last, pos)
        last = pos
        if pos < len(text) and text[pos] == ",":
            pos += 1
            continue
        if pos < len(text) and text[pos] == "]":
            if skip_ws(pos + 1) < len(text):
                yield Problem(file, text.count("\n", 0, pos + 1) + 1, "file", "unexpected text after the closing ]")
            return
        yield Problem(file, line, "file", "truncated JSON: expected , or ] after a record" if pos >= len(text)
                      else f"invalid JSON: expected , or ] after record {index - 1}")
        return


def _text_documents(text: str, file: str, mode: str) -> Iterator[RawRecord | Problem]:
    lines = text.split("\n")
    if mode == "auto":
        # A blank line between non-blank lines means the author wrote paragraphs.
        mode = "paragraph" if _has_inner_blank([l.strip() for l in lines]) else "line"
    if mode == "line":
        for number, line in enumerate(lines, start=1):
            if line.strip():
                yield RawRecord(file, number, line.strip())
        return
    start, chunk = None, []
    for number, line in enumerate(lines + [""], start=1):
        if line.strip():
            if start is None:
                start = number
            chunk.append(line.strip())
        elif chunk:
            yield RawRecord(file, start, "\n".join(chunk))
            start, chunk = None, []


def _has_inner_blank(stripped: list[str]) -> bool:
    nonblank = [i for i, s in enumerate(stripped) if s]
    return bool(nonblank) and any(not stripped[i] for i in range(nonblank[0], nonblank[-1]))


def _parquet_rows(path: Path, file: str) -> Iterator[RawRecord | Problem]:
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        yield Problem(file, None, "file", f"not a readable parquet file: {exc}")
        return
    row = 0
    for batch in table.iter_batches(batch_size=1024):
        for value in batch.to_pylist():
            row += 1
            yield RawRecord(file, row, value)


def read_file(path: str | Path, txt_mode: str = "auto") -> Iterator[RawRecord | Problem]:
    """Records and problems of one file, in order."""
    path = Path(path)
    file = str(path)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        yield from _parquet_rows(path, file)
        return
    if suffix not in SUFFIXES:
        yield Problem(file, None, "file", f"unsupported file type {suffix!r}; use one of {', '.join(SUFFIXES)}")
        return
    text, problems = _decode(path.read_bytes(), file)
    yield from problems
    if text is None:
        return
    if suffix == ".txt":
        yield from _text_documents(text, file, txt_mode)
    elif suffix == ".json" and text.lstrip().startswith("["):
        yield from _json_array(text, file)
    else:
        yield from _json_lines(text, file)


def read_files(paths: Iterable[str | Path], txt_mode: str = "auto") -> Iterator[RawRecord | Problem]:
    if txt_mode not in TXT_MODES:
        raise ValueError(f"txt_mode must be one of {TXT_MODES}, got {txt_mode!r}")
    for path in expand_paths(paths):
        yield from read_file(path, txt_mode)
