"""The files of Chinese-LLaMA-Alpaca-3's scripts/ceval/eval.py, written from an `eval exam` run's predictions.

Written by `write_takes` beside ours, for C-Eval runs, per repeat K of --n_times:
    take{K}/summary.json     {subject: {score: %, num, correct}, grouped: {category: {correct, num, score: 0-1}},
                             All: {score: 0-1, num, correct}}: the old script's shape and units
    take{K}/submission.json  {subject: {row index: letter}}: every subject, as the old script always wrote it
    take{K}/{subject}_test.csv   with --do_save_csv: the split's rows + model_output + correctness
                             (named _test.csv whatever the split, as the old script named it)
"""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path
from typing import Any, Callable

from subjectlm.eval.exam.directory import CATEGORIES
from subjectlm.eval.exam.prediction import Prediction
from subjectlm.eval.exam.runner import PREDICTIONS, ExamConfig, exam_subjects, read_predictions
from subjectlm.io import atomic_file, write_json

Answers = dict[tuple[str, Any], Prediction]  # one repeat's predictions by (subject, id)


def _correct(by_key: Answers, subject: str, doc: Any) -> bool:
    record = by_key.get((subject, doc.id))
    return record is not None and bool(record.correct)


def _old_summary(exams: list[Any], by_key: Answers) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for exam in exams:
        num = len(exam.docs)
        correct = sum(1 for d in exam.docs if _correct(by_key, exam.info.handle, d))
        summary[exam.info.handle] = {"score": 100 * correct / num if num else 0.0, "num": num, "correct": float(correct)}
    grouped = {cat: {"correct": 0.0, "num": 0} for cat in CATEGORIES}
    for exam in exams:
        group = grouped.setdefault(exam.info.category, {"correct": 0.0, "num": 0})
        group["num"] += summary[exam.info.handle]["num"]
        group["correct"] += summary[exam.info.handle]["correct"]
    for group in grouped.values():
        group["score"] = group["correct"] / group["num"] if group["num"] else None
    total = sum(g["num"] for g in grouped.values())
    right = sum(g["correct"] for g in grouped.values())
    summary["grouped"] = grouped
    summary["All"] = {"score": right / total if total else None, "num": total, "correct": right}
    return summary


def _letter(by_key: Answers, subject: str, doc: Any) -> str | None:
    record = by_key.get((subject, doc.id))
    return None if record is None else record.prediction


def _old_submission(exams: list[Any], by_key: Answers) -> dict[str, dict[str, str]]:
    """Keys are row positions in the split's file (the old script's DataFrame index), values the letters."""
    return {exam.info.handle: {str(i): _letter(by_key, exam.info.handle, d) or "NA" for i, d in enumerate(exam.docs)}
            for exam in exams}


def subject_csv(exam: Any, by_key: Answers) -> str:
    """The split's rows as the old script saved them: an unnamed index column, the file's columns,
    then model_output (the decoded top token; our letter outside cla3) and correctness (1/0)."""
    with_answer = any(d.answer is not None for d in exam.docs)
    with_explanation = any(d.explanation for d in exam.docs)
    head = ["", "id", "question", "A", "B", "C", "D"] + (["answer"] if with_answer else []) + \
        (["explanation"] if with_explanation else []) + ["model_output", "correctness"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(head)
    for i, doc in enumerate(exam.docs):
        record = by_key.get((exam.info.handle, doc.id))
        output = None if record is None else record.prediction if record.response is None else record.response
        row = [i, doc.id, doc.question, *doc.options] + ([doc.answer or ""] if with_answer else []) + \
            ([doc.explanation or ""] if with_explanation else [])
        row += [output or "", int(_correct(by_key, exam.info.handle, doc))]
        writer.writerow(row)
    return buffer.getvalue()


def write_takes(config: ExamConfig, do_save_csv: bool, log: Callable[[str], None] = print) -> None:
    """take0..take{n_times-1} in the old script's formats, from the run's predictions.jsonl (C-Eval runs
    only; that script read nothing else)."""
    fmt, exams = exam_subjects(config)
    if fmt != "ceval":
        if do_save_csv:
            log(f"note: --do_save_csv writes the old C-Eval files; this exam is {fmt}, so only our outputs are written")
        return
    out = Path(config.output_dir)
    records = read_predictions(out / PREDICTIONS)
    for k in range(config.n_times):
        take = out / f"take{k}"
        by_key = {(r.subject, r.id): r for r in records if r.repeat == k}
        write_json(take / "summary.json", _old_summary(exams, by_key))
        write_json(take / "submission.json", _old_submission(exams, by_key))
        if do_save_csv:
            for exam in exams:
                with atomic_file(take / f"{exam.info.handle}_test.csv") as handle:
                    handle.write(subject_csv(exam, by_key))
    for stale in out.glob("take*"):  # an overwritten run with more repeats leaves no extra takes
        if stale.is_dir() and stale.name[4:].isdigit() and int(stale.name[4:]) >= config.n_times:
            shutil.rmtree(stale)
