"""What `eval exam` keeps of Chinese-LLaMA-Alpaca-3's scripts/ceval/eval.py: its flags and its files.

Flags (resolved on ExamConfig by `resolve_config`):
    --few_shot False      zero-shot, whatever --ntrain/-k (= our --shots) says; -k -1: every dev row
    --do_test True        the test split (our --split test)
    --do_save_csv True    take{K}/{subject}_test.csv: the split's rows + model_output + correctness
                          (named _test.csv whatever the split, as the old script named it)
    no --data             the old layout in the working directory: data/{dev,val,test} + subject_mapping.json

Files (written by `write_takes` beside ours, for C-Eval runs), per repeat K of --n_times:
    take{K}/summary.json     {subject: {score: %, num, correct}, grouped: {category: {correct, num, score: 0-1}},
                             All: {score: 0-1, num, correct}}: the old script's shape and units
    take{K}/submission.json  {subject: {row index: letter}}: every subject, as the old script always wrote it
"""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path
from typing import Any, Callable

from subjectlm.config import ConfigError
from subjectlm.eval.exams import CATEGORIES
from subjectlm.io import atomic_file, write_json

MAPPING = "subject_mapping.json"


def old_layout_dir(cwd: Path | None = None) -> str:
    """`data`, if the working directory holds the old layout (what `unzip ceval-exam.zip -d data` leaves)."""
    cwd = cwd or Path.cwd()
    if (cwd / "data" / "val").is_dir() and (cwd / "data" / "dev").is_dir() and (cwd / MAPPING).is_file():
        return str(cwd / "data")
    raise ConfigError("data: give the exam directory (--data DIR), or run where the old scripts ran: with "
                      f"data/{{dev,val,test}} and {MAPPING} in the working directory")


def resolve_config(config: Any) -> None:
    """Give the old flags their old meaning on an ExamConfig (called from its __post_init__)."""
    if not config.data:
        config.data = old_layout_dir()
    if config.do_test:
        if config.split == "dev":
            raise ConfigError("do_test: answers the test split; drop --split dev")
        config.split = "test"
    if not config.few_shot:
        config.shots = 0
    if config.prompt_style == "cla3":
        if config.cot:
            raise ConfigError("prompt_style: cla3 reproduces the old answer-only letter scoring; drop --cot")
        if getattr(config, "scoring", "letter") != "letter":
            raise ConfigError("prompt_style: cla3 scores letters as the old script did; it needs --scoring letter")
        if config.backend not in ("auto", "hf") or str(config.model).endswith(".gguf"):
            raise ConfigError("prompt_style: cla3 reads raw logits over the whole vocabulary (the old repetition "
                              "penalty needs them): it runs on the hf backend with a model directory")


def notes(config: Any) -> list[str]:
    """One line per old flag that changes nothing here."""
    lines = []
    if config.use_flash_attention_2 is not None:
        lines.append("note: --use_flash_attention_2 changes nothing here: the hf backend picks its attention "
                     "itself (shared-prefix SDPA where the model allows it)")
    if config.verbose and config.prompt_style != "cla3":
        lines.append("note: --verbose prints each question with --prompt_style cla3; here every answer is in "
                     "predictions.jsonl")
    return lines


def adopt_parent_mapping(data_dir: Path, exams: list[Any]) -> None:
    """In the old layout subject_mapping.json sits beside data/, not in it: take the names and categories from there."""
    import dataclasses
    import json

    from subjectlm.eval.exams import CEVAL_HARD

    if (data_dir / MAPPING).is_file() or not (data_dir.parent / MAPPING).is_file():
        return
    mapping = json.loads((data_dir.parent / MAPPING).read_text(encoding="utf-8"))
    for exam in exams:
        entry = mapping.get(exam.info.handle)
        if entry:
            exam.info = dataclasses.replace(exam.info, name=entry[1], category=entry[2],
                                            hard=exam.info.handle in CEVAL_HARD)


# ---- the old files


def _old_summary(exams: list[Any], by_key: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for exam in exams:
        num = len(exam.docs)
        correct = sum(1 for d in exam.docs if (by_key.get((exam.info.handle, d.id)) or {}).get("correct"))
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


def _old_submission(exams: list[Any], by_key: dict[tuple[str, str], dict[str, Any]]) -> dict[str, dict[str, str]]:
    """Keys are row positions in the split's file (the old script's DataFrame index), values the letters."""
    return {exam.info.handle: {str(i): (by_key.get((exam.info.handle, d.id)) or {}).get("prediction") or "NA"
                               for i, d in enumerate(exam.docs)}
            for exam in exams}


def subject_csv(exam: Any, by_key: dict[tuple[str, str], dict[str, Any]]) -> str:
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
        record = by_key.get((exam.info.handle, doc.id)) or {}
        row = [i, doc.id, doc.question, *doc.options] + ([doc.answer or ""] if with_answer else []) + \
            ([doc.explanation or ""] if with_explanation else [])
        row += [record.get("response", record.get("prediction")) or "", int(bool(record.get("correct")))]
        writer.writerow(row)
    return buffer.getvalue()


def write_takes(out: Path, config: Any, fmt: str, exams: list[Any], records: list[dict[str, Any]],
                log: Callable[[str], None] = print) -> None:
    """take0..take{n_times-1} in the old script's formats (C-Eval runs only; that script read nothing else)."""
    if fmt != "ceval":
        if config.do_save_csv:
            log(f"note: --do_save_csv writes the old C-Eval files; this exam is {fmt}, so only our outputs are written")
        return
    for k in range(config.n_times):
        take = out / f"take{k}"
        by_key = {(r["subject"], r["id"]): r for r in records if r["repeat"] == k}
        write_json(take / "summary.json", _old_summary(exams, by_key))
        write_json(take / "submission.json", _old_submission(exams, by_key))
        if config.do_save_csv:
            for exam in exams:
                with atomic_file(take / f"{exam.info.handle}_test.csv") as handle:
                    handle.write(subject_csv(exam, by_key))
    for stale in out.glob("take*"):  # an overwritten run with more repeats leaves no extra takes
        if stale.is_dir() and stale.name[4:].isdigit() and int(stale.name[4:]) >= config.n_times:
            shutil.rmtree(stale)
