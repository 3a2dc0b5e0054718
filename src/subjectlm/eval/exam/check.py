"""`check_exam`: everything wrong with an exam directory, found before a model is loaded.

Per file (`scan_docs` in directory.py): empty or unknown answer letters, missing option columns,
short rows, repeated ids, encoding (errors); a BOM, empty options (warnings). Per directory: the
layout, subject_mapping.json's entries, subjects the mapping or the benchmark's table does not
name (warning: they run as category Other under their file name), subjects without dev shots.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from subjectlm.data.check import finding_lines, verdict
from subjectlm.data.errors import Problem
from subjectlm.eval.exam.directory import (
    CATEGORIES,
    CMMLU_SUBJECTS,
    MMLU_CATEGORIES,
    SPLITS,
    ExamError,
    csv_path,
    detect_format,
    list_subjects,
    scan_docs,
    subject_info,
)


@dataclass
class ExamCheck:
    data_dir: str
    layout: str | None  # ceval, cmmlu, mmlu; None when not recognised
    files: dict[str, int] = field(default_factory=dict)  # CSV file -> good questions
    problems: list[Problem] = field(default_factory=list)  # errors
    warnings: list[Problem] = field(default_factory=list)
    subjects: set[str] = field(default_factory=set)
    strict: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems and not (self.strict and self.warnings)

    def add(self, found: list[Problem]) -> None:
        for problem in found:
            (self.warnings if problem.warning else self.problems).append(problem)

    def format(self, show: int = 50) -> str:
        lines = [f"kind: exam ({self.layout or 'unknown'} layout): {self.data_dir}"]
        lines += [f"  {file}: {count} questions" for file, count in self.files.items()]
        lines.append(f"questions: {sum(self.files.values())} valid in {len(self.files)} file(s) of "
                     f"{len(self.subjects)} subject(s), {len(self.problems)} bad, {len(self.warnings)} warning(s)")
        lines += finding_lines(self.problems, self.warnings, self.strict, show)
        lines.append(verdict(self.problems, self.warnings, self.strict))
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {"kind": "exam", "data_dir": self.data_dir, "layout": self.layout, "files": self.files,
                "questions": sum(self.files.values()), "bad": [str(p) for p in self.problems],
                "warnings": [str(p) for p in self.warnings], "strict": self.strict, "ok": self.ok}


def _mapping_problems(path: Path) -> tuple[dict | None, list[Problem]]:
    """subject_mapping.json read, each entry checked: {subject: [English name, Chinese name, category]}."""
    text = path.read_text(encoding="utf-8-sig")
    try:
        mapping = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, [Problem(str(path), exc.lineno, "file", f"invalid JSON: {exc.msg} at column {exc.colno}")]
    if not isinstance(mapping, dict):
        return None, [Problem(str(path), 1, "file", "expected an object {subject: [English name, Chinese name, category]}")]
    problems = []
    for subject, entry in mapping.items():
        line = text.count("\n", 0, max(text.find(json.dumps(subject)), 0)) + 1
        if not (isinstance(entry, list) and len(entry) >= 3 and all(isinstance(e, str) for e in entry[:3])):
            problems.append(Problem(str(path), line, subject, "expected [English name, Chinese name, category]"))
        elif entry[2] not in CATEGORIES:
            problems.append(Problem(str(path), line, subject, f"category {entry[2]!r} is not one of "
                                    f"{', '.join(CATEGORIES)}", warning=True))
    return (None if any(not p.warning for p in problems) else mapping), problems


def _unmapped(fmt: str, subject: str, mapping: dict | None) -> str | None:
    """Why a subject would run without its name and category, or None when it is known."""
    info = subject_info(Path(), fmt, subject, mapping)
    if fmt == "ceval" and subject not in (mapping or {}):
        where = "subject_mapping.json" if mapping is not None else "a subject_mapping.json"
    elif fmt == "cmmlu" and subject not in CMMLU_SUBJECTS:
        where = "the CMMLU subject table"
    elif fmt == "mmlu" and subject not in MMLU_CATEGORIES:
        where = "the MMLU subject table"
    else:
        return None
    return f"{subject!r} is not in {where}: the prompt calls it {info.name!r} and it counts as {info.category}"


def check_exam(data_dir: str | Path, fmt: str = "auto", splits: tuple[str, ...] | None = None,
               subjects: list[str] | None = None, strict: bool = False) -> ExamCheck:
    """Every problem of an exam directory (all its splits unless `splits` names some)."""
    data_dir = Path(data_dir)
    report = ExamCheck(str(data_dir), None, strict=strict)
    if not data_dir.is_dir():
        report.add([Problem(str(data_dir), None, "directory", "exam directory not found")])
        return report
    try:
        report.layout = fmt = detect_format(data_dir) if fmt == "auto" else fmt
    except ExamError as exc:
        report.add([Problem(str(data_dir), None, "directory", str(exc).split(": ", 1)[-1])])
        return report
    mapping = None
    if (data_dir / "subject_mapping.json").is_file():
        mapping, found = _mapping_problems(data_dir / "subject_mapping.json")
        report.add(found)
    wanted = [("test" if fmt == "cmmlu" and s == "val" else s) for s in (splits or SPLITS)]
    present = [s for s in dict.fromkeys(wanted) if (data_dir / s).is_dir()]
    for split in dict.fromkeys(wanted):
        if split not in present and (splits is not None and split != "dev"):
            report.add([Problem(str(data_dir / split), None, "directory", "no such split directory")])
    for split in present:
        available = list_subjects(data_dir, fmt, split)
        chosen = subjects or available
        for subject in chosen:
            path = csv_path(data_dir, fmt, split, subject)
            if not path.is_file():
                if split != "dev":
                    shown = ", ".join(available[:8]) + (", ..." if len(available) > 8 else "")
                    report.add([Problem(str(data_dir / split), None, "subjects",
                                        f"{subject!r} has no file here ({path.name}); available: {shown or 'none'}")])
                continue
            docs, found = scan_docs(path, fmt, subject, split)
            report.files[str(path)] = len(docs)
            report.add(found)
            if subject not in report.subjects:
                report.subjects.add(subject)
                why = _unmapped(fmt, subject, mapping)
                if why:
                    report.add([Problem(str(path), None, "subject", why, warning=True)])
            if split != "dev" and not csv_path(data_dir, fmt, "dev", subject).is_file():
                report.add([Problem(str(path), None, "subject", "no dev file for this subject: no few-shot examples",
                                    warning=True)])
    return report


def require_valid_exam(data_dir: str | Path, fmt: str = "auto", split: str = "val",
                       subjects: list[str] | None = None, log: Callable[[str], None] = print) -> None:
    """What `eval exam` runs before loading a model: log the warnings, refuse any error (ExamError)."""
    report = check_exam(data_dir, fmt, ("dev", split), subjects)
    for line in finding_lines([], report.warnings, strict=False, show=10):
        log(line)
    if report.problems:
        if len(report.problems) == 1:
            raise ExamError(str(report.problems[0]))
        raise ExamError(f"{len(report.problems)} problems in the exam files of {data_dir}:\n"
                        + "\n".join(f"  {p}" for p in report.problems[:20])
                        + (f"\n  ... and {len(report.problems) - 20} more" if len(report.problems) > 20 else ""))
