"""`subjectlm data check`: what is in the data, and everything wrong with it.

Counts records per file, token-length percentiles with a model's tokenizer (characters when no
model is given), and lists every finding on its own line, in file order:

    error: FILE:LINE: FIELD: what is wrong          a record that cannot be used
    warning: FILE:LINE: FIELD: what is odd          read anyway: a BOM, an exact duplicate, a record over --max_length

The closing line counts both. `strict` turns warnings into errors (`--strict`), so a script can
refuse data with duplicates. `ok` is what the exit status reports: 0 ok, 1 findings.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Iterable

from subjectlm.data import iter_records
from subjectlm.data.errors import DataFileNotFoundError, Problem
from subjectlm.data.readers import SUFFIXES, expand_paths


def finding_lines(problems: list[Problem], warnings: list[Problem], strict: bool, show: int = 50) -> list[str]:
    """`error: ...` / `warning: ...` lines in file order (under `strict`, warnings are errors)."""
    ordered = sorted([*problems, *warnings], key=lambda p: (p.file, p.line or 0))
    lines = [f"{'warning' if p.warning and not strict else 'error'}: {p}" for p in ordered[:show]]
    if len(ordered) > show:
        lines.append(f"... and {len(ordered) - show} more")
    return lines


def verdict(problems: list[Problem], warnings: list[Problem], strict: bool, what: str = "records",
            has_strict: bool = True) -> str:
    """One line: FAILED or OK. `has_strict`: the command offers --strict (`run` does not), so say what it does."""
    if problems or (strict and warnings):
        counted = len(problems) + (len(warnings) if strict else 0)
        return f"FAILED: {counted} finding(s) to fix" + (" (warnings count as errors under --strict)" if strict and warnings else "")
    if warnings:
        return f"OK with {len(warnings)} warning(s)" + (" (--strict makes them errors)" if has_strict else "")
    return "OK"


@dataclasses.dataclass
class CheckReport:
    kind: str
    files: dict[str, int]  # file -> good records
    problems: list[Problem]  # errors: records that cannot be used, files that cannot be read
    lengths: list[int]
    length_unit: str  # "tokens" or "characters"
    duplicates: list[list[str]]  # groups of sources with identical content
    too_long: list[tuple[str, int]]
    max_length: int | None
    warnings: list[Problem] = dataclasses.field(default_factory=list)
    strict: bool = False

    @property
    def records(self) -> int:
        return sum(self.files.values())

    @property
    def ok(self) -> bool:
        return not self.problems and not (self.strict and self.warnings)

    def percentiles(self) -> dict[str, int]:
        if not self.lengths:
            return {}
        ordered = sorted(self.lengths)

        def at(q: float) -> int:
            return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]

        return {"min": ordered[0], "p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": ordered[-1]}

    def format(self, show: int = 50) -> str:
        lines = [f"kind: {self.kind}"]
        for file, count in self.files.items():
            lines.append(f"  {file}: {count} records")
        lines.append(f"records: {self.records} valid, {len(self.problems)} bad, {len(self.warnings)} warning(s)")
        if self.lengths:
            pct = self.percentiles()
            lines.append(f"length ({self.length_unit}): " + "  ".join(f"{k} {v}" for k, v in pct.items()))
        extra = sum(len(g) - 1 for g in self.duplicates)
        lines.append(f"exact duplicates: {extra} record(s) in {len(self.duplicates)} group(s)")
        if self.max_length is not None:
            lines.append(f"longer than {self.max_length} {self.length_unit}: {len(self.too_long)}")
        lines += finding_lines(self.problems, self.warnings, self.strict, show)
        lines.append(verdict(self.problems, self.warnings, self.strict))
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "files": self.files, "records": self.records, "bad": [str(p) for p in self.problems],
                "warnings": [str(p) for p in self.warnings], "strict": self.strict,
                "length_unit": self.length_unit, "length_percentiles": self.percentiles(),
                "duplicates": self.duplicates, "too_long": self.too_long, "ok": self.ok}


def _render(kind: str, value: Any, tokenizer: Any) -> str:
    """The text whose length matters for training: the chat-formatted conversation for sft/dpo."""
    if kind == "pt" and isinstance(value, str):
        return value
    if kind in ("pt", "sft"):  # pt: an instruction record, trained as its rendered conversation
        messages = value.messages
    else:
        messages = value.prompt + [{"role": "assistant", "content": max(value.chosen, value.rejected, key=len)}]
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False)
    return "\n".join(m["content"] for m in messages)


def _content_key(kind: str, value: Any) -> str:
    if kind == "pt" and isinstance(value, str):
        payload: Any = value
    elif kind in ("pt", "sft"):
        payload = value.messages
    else:
        payload = [value.prompt, value.chosen, value.rejected]
    return hashlib.sha1(json.dumps(payload, ensure_ascii=False, sort_keys=True).encode()).hexdigest()


def _expand(paths: Iterable[str | Path], problems: list[Problem]) -> list[Path]:
    """The files to read; a path that does not exist (or a folder without data files) is a finding."""
    files: list[Path] = []
    for path in paths:
        try:
            files += expand_paths([path])
        except DataFileNotFoundError:
            what = (f"no {', '.join(SUFFIXES)} files in this directory" if Path(path).is_dir()
                    else "no such file or directory")
            problems.append(Problem(str(path), None, "file", what))
    return files


def check(kind: str, paths: Iterable[str | Path], tokenizer: Any = None, max_length: int | None = None,
          txt_mode: str = "auto", strict: bool = False) -> CheckReport:
    problems: list[Problem] = []
    warnings: list[Problem] = []
    files = _expand(paths, problems)
    counts: dict[str, int] = {str(f): 0 for f in files}
    lengths: list[int] = []
    too_long: list[tuple[str, int]] = []
    seen: dict[str, list[str]] = {}
    for raw, value, problem in iter_records(kind, files, txt_mode):
        if problem is not None:
            (warnings if problem.warning else problems).append(problem)
            continue
        counts[raw.file] += 1
        text = _render(kind, value, tokenizer)
        n = len(tokenizer(text, add_special_tokens=False)["input_ids"]) if tokenizer is not None else len(text)
        lengths.append(n)
        if max_length is not None and n > max_length:
            too_long.append((raw.source, n))
            unit = "tokens" if tokenizer is not None else "characters"
            warnings.append(Problem(raw.file, raw.line, "record", f"{n} {unit}, longer than max_length {max_length}",
                                    warning=True))
        group = seen.setdefault(_content_key(kind, value), [])
        if group:
            warnings.append(Problem(raw.file, raw.line, "record", f"exact duplicate of {group[0]}", warning=True))
        group.append(raw.source)
    duplicates = [group for group in seen.values() if len(group) > 1]
    return CheckReport(kind, counts, problems, lengths, "tokens" if tokenizer is not None else "characters",
                       duplicates, too_long, max_length, warnings, strict)
