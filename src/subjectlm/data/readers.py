"""Reading raw records out of files, with line numbers, and finding what is wrong with the bytes.

One reader per file kind: `.jsonl` (JSON lines), `.json` (a JSON array, or JSON lines under a .json
name), `.txt` (one document per line, or per blank-line-separated paragraph), `.parquet`. A reader
yields `RawRecord`s and `Problem`s in file order; it never drops anything silently.

Found at the byte level, for every kind of data: an empty file (an error naming the file), a
UTF-8 BOM (read, with a warning), text in another encoding, a JSON object with the same key twice
(json would keep the last value silently), and a string no tokenizer can encode (a lone UTF-16
surrogate from a `\\ud800` escape).
"""

from __future__ import annotations

import codecs
import dataclasses
import hashlib
import json
import re
from pathlib import Path
from typing import Any, Iterable, Iterator

from subjectlm.data.errors import DataFileNotFoundError, Problem

SUFFIXES = (".jsonl", ".json", ".txt", ".parquet")
TXT_MODES = ("auto", "line", "paragraph")
# A \u escape of a UTF-16 surrogate: the only way a JSON string can hold text UTF-8 cannot encode.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


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
                raise DataFileNotFoundError(f"{path}: no {', '.join(SUFFIXES)} files in this directory")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise DataFileNotFoundError(f"{path}: no such file or directory")
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
        problems.append(Problem(file, 1, "file", "file starts with a UTF-8 byte-order mark (BOM): read without it; "
                                "save the file as UTF-8 without BOM", warning=True))
        data = data[len(codecs.BOM_UTF8):]
    try:
        return data.decode("utf-8"), problems
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        problems.append(Problem(file, line, "file", f"not UTF-8 (byte 0x{data[exc.start]:02x}); it looks like {guess_encoding(data)}: convert the file to UTF-8"))
        return None, problems


class _RepeatedKeys:
    """A json `object_pairs_hook` that builds dicts as json does and remembers keys given twice."""

    def __init__(self) -> None:
        self.found: list[str] = []

    def __call__(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        value = dict(pairs)
        if len(value) != len(pairs):
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen:
                    self.found.append(key)
                seen.add(key)
        return value

    def take(self) -> list[str]:
        found, self.found = self.found, []
        return found


def _unencodable(value: Any, where: str = "") -> tuple[str, str] | None:
    """(field, problem) for the first string of a parsed record that UTF-8 cannot encode."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return where or "record", (f"cannot be encoded as UTF-8: lone surrogate U+{ord(value[exc.start]):04X} at "
                                       f"character {exc.start} (a \\u escape of half a surrogate pair)")
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            found = _unencodable(key, where or "record") or _unencodable(item, f"{where}.{key}" if where else key)
            if found:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _unencodable(item, f"{where or 'record'}[{i}]")
            if found:
                return found
    return None


def _checked(value: Any, source_text: str, repeated: list[str], file: str, line: int,
             where: str = "record") -> RawRecord | Problem:
    """The parsed value as a record, or the problem that a valid JSON parse does not catch."""
    if not isinstance(value, dict):
        return Problem(file, line, where, f"expected a JSON object, got {type(value).__name__}")
    if repeated:
        return Problem(file, line, repeated[0], f"key {repeated[0]!r} appears twice in one object "
                                                "(JSON would keep only the last value)")
    if _SURROGATE_ESCAPE.search(source_text):
        found = _unencodable(value)
        if found:
            return Problem(file, line, *found)
    return RawRecord(file, line, value)


def _json_lines(text: str, file: str) -> Iterator[RawRecord | Problem]:
    lines = text.split("\n")
    repeated = _RepeatedKeys()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line, object_pairs_hook=repeated)
        except json.JSONDecodeError as exc:
            repeated.take()
            truncated = exc.pos >= len(line.rstrip()) or "Unterminated" in exc.msg
            what = "truncated JSON (the line ends before the record does)" if truncated else f"invalid JSON: {exc.msg} at column {exc.colno}"
            yield Problem(file, number, "record", what)
            continue
        yield _checked(value, line, repeated.take(), file, number)


def _json_array(text: str, file: str) -> Iterator[RawRecord | Problem]:
    """Walk a JSON array element by element so that each record knows its starting line."""
    repeated = _RepeatedKeys()
    decoder = json.JSONDecoder(object_pairs_hook=repeated)
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
        yield _checked(value, text[pos:end], repeated.take(), file, line, f"record {index}")
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
        mode = "paragraph" if _has_inner_blank([line.strip() for line in lines]) else "line"
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


def _file_items(path: Path, file: str, txt_mode: str) -> Iterator[RawRecord | Problem]:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        yield from _parquet_rows(path, file)
        return
    if suffix not in SUFFIXES:
        yield Problem(file, None, "file", f"unsupported file type {suffix!r}; use one of {', '.join(SUFFIXES)}")
        return
    data = path.read_bytes()
    text, problems = _decode(data, file)
    yield from problems
    if text is None:
        return
    if not text.strip():
        what = "empty file (0 bytes)" if not data else "only a byte-order mark" if not text else "only whitespace"
        yield Problem(file, None, "file", f"{what}: no records")
    elif suffix == ".txt":
        yield from _text_documents(text, file, txt_mode)
    elif suffix == ".json" and text.lstrip().startswith("["):
        yield from _json_array(text, file)
    else:
        yield from _json_lines(text, file)


def read_file(path: str | Path, txt_mode: str = "auto") -> Iterator[RawRecord | Problem]:
    """Records and problems of one file, in order; a file with neither (`[]`, a parquet of 0 rows) is a problem."""
    path = Path(path)
    file = str(path)
    anything = False
    for item in _file_items(path, file, txt_mode):
        anything = anything or isinstance(item, RawRecord) or not item.warning
        yield item
    if not anything:
        yield Problem(file, None, "file", "no records in this file")


def read_files(paths: Iterable[str | Path], txt_mode: str = "auto") -> Iterator[RawRecord | Problem]:
    if txt_mode not in TXT_MODES:
        raise ValueError(f"txt_mode must be one of {TXT_MODES}, got {txt_mode!r}")
    for path in expand_paths(paths):
        yield from read_file(path, txt_mode)
