"""`eval exam` with the old script's flags: the notes, its scorer in the scoring table, its files after the run."""

from __future__ import annotations

from typing import Any, Callable

from subjectlm.compat.cla3.flags import OldScriptFlags, notes
from subjectlm.compat.cla3.outputs import write_takes
from subjectlm.compat.cla3.scorer import cla3_scorer
from subjectlm.eval.exam.cloze import LETTER
from subjectlm.eval.exam.runner import ExamConfig, run_exam
from subjectlm.eval.exam.scoring import SCORERS


def run_exam_with_old_flags(config: ExamConfig, old: OldScriptFlags,
                            log: Callable[[str], None] = print) -> dict[str, Any]:
    """Answer the exam as `run_exam` does (with --prompt_style cla3, by the old one-token scoring), then write
    take{K}/ beside our outputs; return the summary."""
    for line in notes(old):
        log(line)
    scorers = SCORERS
    if old.prompt_style == "cla3":  # --verbose prints each question on stdout, as the old script did
        scorers = {**SCORERS, LETTER: cla3_scorer(old.few_shot, old.verbose)}
    summary = run_exam(config, log=log, scorers=scorers)
    write_takes(config, old.do_save_csv, log)
    return summary
