"""`data check` of what a stage reads, for `run --dry-run` (named by the stage table's `check`).

Only paths that exist are read: a missing one is reported already, at its recipe line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from subjectlm.data.errors import DataError, Problem
from subjectlm.pipeline.values import paths_in


def _existing(values: dict[str, Any], key: str) -> list[str]:
    return [p for p in paths_in(values.get(key)) if Path(p).exists()]


def _problems_of(read: Callable[[], Any]) -> list[Problem]:
    try:
        read()
    except DataError as exc:
        return list(exc.problems)
    return []


def _training(kind: str, values: dict[str, Any]) -> list[Problem]:
    from subjectlm.data.check import check

    found: list[Problem] = []
    for key in ("data", "validation_file"):
        if _existing(values, key):
            report = check(kind, _existing(values, key), txt_mode=values.get("txt_mode", "auto"))
            found += report.problems + report.warnings
    return found


def check_pt(values: dict[str, Any]) -> list[Problem]:
    return _training("pt", values)


def check_sft(values: dict[str, Any]) -> list[Problem]:
    return _training("sft", values)


def check_dpo(values: dict[str, Any]) -> list[Problem]:
    return _training("dpo", values)


def check_eval(values: dict[str, Any]) -> list[Problem]:
    """The exam folder, held-out text (as pt text) and QA file."""
    from subjectlm.data.check import check

    found: list[Problem] = []
    if _existing(values, "data"):
        from subjectlm.eval.exam.check import check_exam

        exam = check_exam(values["data"], values.get("format", "auto"), ("dev", values.get("split", "val")),
                          values.get("subjects") or None)
        found += exam.problems + exam.warnings
    if _existing(values, "ppl_data"):
        report = check("pt", _existing(values, "ppl_data"))
        found += report.problems + report.warnings
    if _existing(values, "qa_data"):
        from subjectlm.eval.qa.items import read_qa_file

        found += _problems_of(lambda: read_qa_file(values["qa_data"]))
    return found


def check_arena(values: dict[str, Any]) -> list[Problem]:
    if not _existing(values, "prompts"):
        return []
    from subjectlm.arena.records import load_prompts

    return _problems_of(lambda: load_prompts(values["prompts"]))
