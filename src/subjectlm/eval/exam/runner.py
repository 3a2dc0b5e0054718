"""`subjectlm eval exam`: answer every question of an exam and write predictions, summary and report.

Predictions are appended to predictions.jsonl as each chunk of questions is
answered (and flushed), so `--resume` after a crash skips what is already there;
the summary, report, chart and submission are written atomically at the end
from all predictions.

`--scoring` picks how a question is answered: `letter` (the official next-token
letter), `cloze` (each option's text scored as the continuation of the question,
four metrics, see cloze.py) or `both`; each way is a scorer of the scoring table
(scoring.py). Each record carries every scored mode under `modes` (and the cloze
log-likelihoods under `cloze`); its top-level `prediction` and `correct` are the
primary mode's: letter when scored, else cloze_acc_norm.

The old Chinese-LLaMA-Alpaca-3 flags are not here: subjectlm.compat.cla3 translates them into
this config before it is built, and gives run_exam its scorer and writes its files.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping

from subjectlm.backends.spec import (
    OpensModel,
    backend_option,
    batch_size_option,
    device_option,
    dtype_option,
    model_option,
    trust_remote_code_option,
)
from subjectlm.config import DATA_FILES, MODEL, OUTPUT, ConfigError, check_options, option, to_dict
from subjectlm.eval.exam import prompts as P
from subjectlm.eval.exam.cloze import CLOZE_MODES, LETTER, SCORING, primary_mode, scoring_modes
from subjectlm.eval.exam.directory import SubjectExam, read_exam
from subjectlm.eval.exam.prediction import Prediction
from subjectlm.eval.exam.scoring import CLOZE, COT, SCORERS, Chunk, Scorer
from subjectlm.io import prepare_output, read_jsonl, write_json

PREDICTIONS = "predictions.jsonl"
EXAM_CONTEXT = 8192  # llama.cpp's context for exam prompts: room for 5-shot prompts of the longest subjects
CHUNK = 128  # questions scored per call: the prefix is recomputed once per chunk, predictions flushed after it
# Settings that must match for --resume to continue an earlier run.
RESUME_KEYS = ("model", "data", "format", "split", "shots", "with_prompt", "cot", "limit", "scoring")
RESUME_DEFAULTS = {"scoring": "letter", "prompt_style": "default"}  # what a run_config.json written before a key existed meant


@dataclasses.dataclass(kw_only=True)
class ExamConfig(OpensModel):
    model: str = model_option(aliases=("--model_path", "--model_name_or_path"), path=MODEL)
    data: str = option("", help="exam directory (C-Eval, CMMLU or MMLU layout); none: ./data with "
                       "./subject_mapping.json, the old scripts' layout (`eval exam`)", aliases=("--data_dir",),
                       path=DATA_FILES)
    format: str = option("auto", help="exam layout", choices=("auto", "ceval", "cmmlu", "mmlu"))
    split: str = option("val", help="split to answer (test writes submission.json)", choices=("val", "test", "dev"))
    subjects: list[str] = option([], help="subjects to run (default: all in the split), e.g. logic,law")
    shots: int = option(5, help="few-shot examples: the first N rows of each subject's dev split (-1: all)",
                        aliases=("--ntrain", "-k"))
    with_prompt: bool = option(False, help="wrap prompts in the model's chat template (shots as turns)")
    cot: bool = option(False, help="chain-of-thought: generate, then extract the letter by regex")
    scoring: str = option("letter", choices=tuple(SCORING),
                          help="letter (the official next-token letter), cloze (each option's text scored as "
                               "the continuation: acc, acc_norm, acc_bytes, acc_pmi) or both")
    n_times: int = option(1, help="repeat the exam K times; report mean and std", min=1)
    batch_size: int = batch_size_option("questions per forward pass")
    output_dir: str = option("runs/eval", help="where predictions, summary and report go", path=OUTPUT)
    resume: bool = option(False, help="continue an interrupted run in output_dir, skipping answered questions")
    overwrite: bool = option(False, help="replace an existing output_dir")
    backend: str = backend_option()
    dtype: str = dtype_option()
    device: str | None = device_option()
    max_new_tokens: int = option(256, help="generation length in --cot mode", min=1)
    limit: int | None = option(None, help="answer only the first N questions per subject (quick checks)", min=1)
    trust_remote_code: bool = trust_remote_code_option()
    def __post_init__(self):
        check_options(self)  # choices and min of every field; the cross-field checks follow
        if self.shots < -1:
            raise ConfigError(f"shots: must be 0 or more (-1: every dev row), got {self.shots}", key="shots")
        if not self.data:
            raise ConfigError("data: give the exam directory (C-Eval, CMMLU or MMLU layout)", key="data")
        if self.resume and self.overwrite:
            raise ConfigError("resume and overwrite: give one or the other", key="resume")
        if self.cot and self.scoring != "letter":
            raise ConfigError("scoring: --cot generates an answer and reads its letter; it needs --scoring letter",
                              key="scoring")


def answer_chunk(backend, exam: SubjectExam, docs: list[P.ExamDoc], config: ExamConfig, fmt: str,
                 repeat: int, scorers: Mapping[str, Scorer] = SCORERS) -> list[Prediction]:
    """Predictions for some questions of one subject (all share its header and shots), by the scorers
    of the config's modes; the letter mode is answered by `cot` with --cot."""
    chunk = Chunk(exam, docs, config, fmt, repeat)
    modes = scoring_modes(config.scoring)
    records = scorers[COT if config.cot else LETTER].answer(backend, chunk) if LETTER in modes else None
    if not any(m in CLOZE_MODES for m in modes):
        return records
    cloze = scorers[CLOZE].answer(backend, chunk)
    if records is None:
        records = cloze
    else:
        for record, scored in zip(records, cloze):
            record.modes.update(scored.modes)
            record.cloze = scored.cloze
    for record in records:  # the top-level prediction is the primary mode's (letter when scored)
        primary = record.modes[primary_mode(modes)]
        record.prediction, record.correct = primary["prediction"], primary["correct"]
    return records


def read_predictions(path: Path, repair: bool = False) -> list[Prediction]:
    """All complete records; with `repair`, a half-written last line (a crash) is cut off the file."""
    return [Prediction.from_json(r) for r in read_jsonl(path, repair=repair, missing_ok=True)]


def _prepare_output(out: Path, config: ExamConfig, prompt_style: str) -> list[Prediction]:
    """Check the output dir against resume/overwrite; return the predictions to keep."""
    settings = {k: to_dict(config)[k] for k in RESUME_KEYS}
    settings["prompt_style"] = prompt_style  # the letter scorer's prompts (compat.cla3 writes its own)
    settings["subjects"] = config.subjects
    exists = prepare_output(out, config.overwrite, config.resume)
    if exists and config.resume:
        saved = out / "run_config.json"
        if saved.is_file():
            before = json.loads(saved.read_text(encoding="utf-8"))
            changed = [k for k in (*RESUME_KEYS, "prompt_style")
                       if before.get(k, RESUME_DEFAULTS.get(k)) != settings[k]]
            if changed:
                raise ConfigError(f"resume: {out} was run with other settings ({', '.join(changed)}); "
                                  "use a new output_dir or --overwrite")
        return read_predictions(out / PREDICTIONS, repair=True)
    out.mkdir(parents=True, exist_ok=True)
    for name in (PREDICTIONS, "summary.json", "report.md", "categories.png", "submission.json"):
        (out / name).unlink(missing_ok=True)  # nothing of an overwritten run may linger
    write_json(out / "run_config.json", settings)
    return []


def exam_subjects(config: ExamConfig) -> tuple[str, list[SubjectExam]]:
    """(layout, the subjects as the run answers them: at most `limit` questions each)."""
    fmt, exams = read_exam(config.data, config.format, config.split, config.subjects or None)
    if config.limit:
        for exam in exams:
            exam.docs = exam.docs[: config.limit]
    return fmt, exams


def run_exam(config: ExamConfig, log: Callable[[str], None] = print, backend=None,
             scorers: Mapping[str, Scorer] = SCORERS) -> dict[str, Any]:
    """Answer the exam with the scorers of `scorers` (scoring.py); return the summary (also written to
    output_dir/summary.json)."""
    from tqdm.auto import tqdm

    from subjectlm.backends import open_backend
    from subjectlm.eval.exam.check import require_valid_exam
    from subjectlm.eval.exam.report import summarize, write_report

    require_valid_exam(config.data, config.format, config.split, config.subjects or None, log)  # refuse bad files first
    fmt, exams = exam_subjects(config)
    short = [e.info.handle for e in exams if len(e.dev) < config.shots]
    if short:
        log(f"note: fewer than {config.shots} dev examples for {', '.join(short)}: using what there is")
    out = Path(config.output_dir)
    records = _prepare_output(out, config, scorers[LETTER].prompt_style)
    done = {(r.repeat, r.subject, r.id) for r in records}
    todo = [(k, e, [d for d in e.docs if (k, e.info.handle, d.id) not in done])
            for k in range(config.n_times) for e in exams]
    todo = [(k, e, docs) for k, e, docs in todo if docs]
    if done:
        log(f"resuming: {len(done)} answers kept, {sum(len(d) for _, _, d in todo)} to go")
    if todo and backend is None:
        backend = open_backend(config.model_spec(n_ctx=EXAM_CONTEXT))
    total = sum(len(docs) for _, _, docs in todo)
    with tqdm(total=total, desc="exam", unit="q", disable=total == 0) as bar, \
            open(out / PREDICTIONS, "a", encoding="utf-8") as sink:
        for repeat, exam, docs in todo:
            bar.set_postfix_str(exam.info.handle)
            for start in range(0, len(docs), CHUNK):
                new = answer_chunk(backend, exam, docs[start:start + CHUNK], config, fmt, repeat, scorers)
                for record in new:
                    sink.write(json.dumps(record.to_json(), ensure_ascii=False) + "\n")
                sink.flush()
                os.fsync(sink.fileno())
                records += new
                bar.update(len(new))
    meta = {"model": config.model, "data": config.data, "format": fmt, "split": config.split,
            "shots": config.shots, "with_prompt": config.with_prompt, "cot": config.cot, "n_times": config.n_times,
            "scoring": config.scoring, "scoring_modes": list(scoring_modes(config.scoring))}
    summary = summarize(records, [e.info for e in exams], meta)
    write_report(out, summary, records)
    return summary
