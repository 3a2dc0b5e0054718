"""`subjectlm eval exam`: answer every question of an exam and write predictions, summary and report.

Predictions are appended to predictions.jsonl as each chunk of questions is
answered (and flushed), so `--resume` after a crash skips what is already there;
the summary, report, chart and submission are written atomically at the end
from all predictions.

`--scoring` picks how a question is answered: `letter` (the official next-token
letter), `cloze` (each option's text scored as the continuation of the question,
four metrics, see cloze.py) or `both`. Each record carries every scored mode under
`modes` (and the cloze log-likelihoods under `cloze`); its top-level `prediction`
and `correct` are the primary mode's: letter when scored, else cloze_acc_norm.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any, Callable

from subjectlm.backends import BACKENDS
from subjectlm.config import DATA_FILES, MODEL, OUTPUT, ConfigError, check_options, option, to_dict
from subjectlm.eval import cla3, legacy_outputs, prompts as P
from subjectlm.eval.cloze import CLOZE_MODES, LETTER, SCORING, primary_mode, score_cloze, scoring_modes
from subjectlm.eval.exams import SubjectExam, read_exam
from subjectlm.eval.extract import extract_choice
from subjectlm.io import prepare_output, read_jsonl, write_json
from subjectlm.models import DTYPE_CHOICES

PREDICTIONS = "predictions.jsonl"
EXAM_CONTEXT = 8192  # llama.cpp's context for exam prompts: room for 5-shot prompts of the longest subjects
CHUNK = 128  # questions scored per call: the prefix is recomputed once per chunk, predictions flushed after it
# Settings that must match for --resume to continue an earlier run.
RESUME_KEYS = ("model", "data", "format", "split", "shots", "with_prompt", "cot", "limit", "scoring", "prompt_style")
RESUME_DEFAULTS = {"scoring": "letter", "prompt_style": "default"}  # what a run_config.json written before a key existed meant


@dataclasses.dataclass(kw_only=True)
class ExamConfig:
    model: str = option("default", help="model directory, .gguf file, or `default`",
                        aliases=("--model_path", "--model_name_or_path"), path=MODEL)
    data: str = option("", help="exam directory (C-Eval, CMMLU or MMLU layout); none: ./data with "
                       "./subject_mapping.json, the old scripts' layout", aliases=("--data_dir",), path=DATA_FILES)
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
    batch_size: int = option(8, help="questions per forward pass", min=1)
    output_dir: str = option("runs/eval", help="where predictions, summary and report go", path=OUTPUT)
    resume: bool = option(False, help="continue an interrupted run in output_dir, skipping answered questions")
    overwrite: bool = option(False, help="replace an existing output_dir")
    backend: str = option("auto", help="hf (transformers), llamacpp (.gguf), vllm (GPU); auto: by the model's file",
                         choices=BACKENDS)
    dtype: str = option("auto", help="weights dtype", choices=DTYPE_CHOICES)
    device: str | None = option(None, help="cpu, cuda, ... (default: cuda if available)")
    max_new_tokens: int = option(256, help="generation length in --cot mode", min=1)
    limit: int | None = option(None, help="answer only the first N questions per subject (quick checks)", min=1)
    trust_remote_code: bool = option(False, help="allow model code from the model directory")
    # --- Chinese-LLaMA-Alpaca-3 scripts/ceval/eval.py's flags, with their meaning there (eval/legacy_outputs.py)
    few_shot: bool = option(True, help="false: zero-shot, whatever --shots/--ntrain say (the old --few_shot)")
    do_test: bool = option(False, help="answer the test split (= --split test); writes submission.json")
    do_save_csv: bool = option(False, help="also write take{K}/{subject}_test.csv: each row with model_output "
                                           "and correctness (the old script's CSVs)")
    prompt_style: str = option("default", choices=("default", "cla3"),
                               help="default: the official prompt, --with_prompt via the model's chat template; "
                                    "cla3: the old script's prompts (Llama 3 chat format, its system prompt) "
                                    "and letter scoring, to compare with numbers published with it")
    verbose: bool = option(False, help="print each question's prompt, answer and ground truth (--prompt_style cla3)")
    use_flash_attention_2: bool | None = option(None, help="accepted from the old eval.py; changes nothing here")

    def __post_init__(self):
        check_options(self)  # choices and min of every field; the cross-field checks follow
        if self.shots < -1:
            raise ConfigError(f"shots: must be 0 or more (-1: every dev row), got {self.shots}")
        legacy_outputs.resolve_config(self)
        if self.resume and self.overwrite:
            raise ConfigError("resume and overwrite: give one or the other")
        if self.cot and self.scoring != "letter":
            raise ConfigError("scoring: --cot generates an answer and reads its letter; it needs --scoring letter")
        if self.prompt_style == "cla3" and self.scoring != "letter":
            raise ConfigError("scoring: --prompt_style cla3 reproduces the old script's letter scoring; "
                              "it needs --scoring letter")


def _softmax(values: list[float]) -> list[float]:
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    total = sum(exps)
    return [e / total for e in exps]


def answer_chunk(backend, exam: SubjectExam, docs: list[P.ExamDoc], config: ExamConfig, fmt: str,
                 repeat: int) -> list[dict[str, Any]]:
    """Predictions for some questions of one subject (all share its header and shots)."""
    if config.prompt_style == "cla3":
        return cla3.answer_chunk(backend, exam, docs, config, repeat)
    style = P.style(fmt)
    shots = exam.dev if config.shots < 0 else exam.dev[: config.shots]
    if config.with_prompt:
        conversations = [P.chat_messages(style, exam.info.name, shots, d, config.cot) for d in docs]
        texts = [backend.chat_prompt(c) for c in conversations]
    else:
        texts = [P.prompt(style, exam.info.name, shots, d, config.cot) for d in docs]
    # A chat template writes its own BOS; tokenizing it with special tokens would double it.
    special = not config.with_prompt
    letters = P.LETTERS[: len(docs[0].options)]
    records = []
    if config.cot:
        from subjectlm.backends import GenParams

        # Greedy, through the backend's generation side; a conversation goes as messages, so the
        # backend renders it with the template and adds no second BOS.
        answers = backend.generate(conversations if config.with_prompt else texts,
                                   GenParams(max_tokens=config.max_new_tokens))
        for doc, reply in zip(docs, (a.text for a in answers)):
            pred = extract_choice(reply)
            records.append({"repeat": repeat, "subject": exam.info.handle, "id": doc.id, "prediction": pred,
                            "answer": doc.answer, "correct": None if doc.answer is None else pred == doc.answer,
                            "response": reply})
        return records
    modes = scoring_modes(config.scoring)
    if LETTER in modes:
        scores = backend.score_next(texts, P.continuations(style, len(letters)), add_special_tokens=special)
        for doc, logprobs in zip(docs, scores):
            probs = _softmax(logprobs)
            pred = letters[max(range(len(letters)), key=lambda i: logprobs[i])]
            correct = None if doc.answer is None else pred == doc.answer
            records.append({
                "repeat": repeat, "subject": exam.info.handle, "id": doc.id,
                "probs": {k: round(p, 6) for k, p in zip(letters, probs)},
                "logprobs": {k: round(v, 6) for k, v in zip(letters, logprobs)},
                "prediction": pred, "answer": doc.answer, "correct": correct,
                "modes": {LETTER: {"prediction": pred, "correct": correct}},
            })
    else:
        records = [{"repeat": repeat, "subject": exam.info.handle, "id": doc.id, "answer": doc.answer, "modes": {}}
                   for doc in docs]
    if any(m in CLOZE_MODES for m in modes):
        for record, cloze in zip(records, score_cloze(backend, style, exam.info.name, shots, docs, config.with_prompt)):
            record["cloze"] = cloze["cloze"]
            record["modes"].update(cloze["modes"])
    for record in records:  # the top-level prediction is the primary mode's (letter when scored)
        record.update(record["modes"][primary_mode(modes)])
    return records


def read_predictions(path: Path, repair: bool = False) -> list[dict[str, Any]]:
    """All complete records; with `repair`, a half-written last line (a crash) is cut off the file."""
    return read_jsonl(path, repair=repair, missing_ok=True)


def _prepare_output(out: Path, config: ExamConfig) -> list[dict[str, Any]]:
    """Check the output dir against resume/overwrite; return the predictions to keep."""
    settings = {k: to_dict(config)[k] for k in RESUME_KEYS}
    settings["subjects"] = config.subjects
    exists = prepare_output(out, config.overwrite, config.resume)
    if exists and config.resume:
        saved = out / "run_config.json"
        if saved.is_file():
            before = json.loads(saved.read_text(encoding="utf-8"))
            changed = [k for k in RESUME_KEYS if before.get(k, RESUME_DEFAULTS.get(k)) != settings[k]]
            if changed:
                raise ConfigError(f"resume: {out} was run with other settings ({', '.join(changed)}); "
                                  "use a new output_dir or --overwrite")
        return read_predictions(out / PREDICTIONS, repair=True)
    out.mkdir(parents=True, exist_ok=True)
    for name in (PREDICTIONS, "summary.json", "report.md", "categories.png", "submission.json"):
        (out / name).unlink(missing_ok=True)  # nothing of an overwritten run may linger
    write_json(out / "run_config.json", settings)
    return []


def run_exam(config: ExamConfig, log: Callable[[str], None] = print, backend=None) -> dict[str, Any]:
    """Answer the exam; return the summary (also written to output_dir/summary.json)."""
    from tqdm.auto import tqdm

    from subjectlm.backends import open_backend
    from subjectlm.eval.exam_check import require_valid_exam
    from subjectlm.eval.report import summarize, write_report

    require_valid_exam(config.data, config.format, config.split, config.subjects or None, log)  # refuse bad files first
    fmt, exams = read_exam(config.data, config.format, config.split, config.subjects or None)
    legacy_outputs.adopt_parent_mapping(Path(config.data), exams)
    for line in legacy_outputs.notes(config):
        log(line)
    if config.limit:
        for exam in exams:
            exam.docs = exam.docs[: config.limit]
    short = [e.info.handle for e in exams if len(e.dev) < config.shots]
    if short:
        log(f"note: fewer than {config.shots} dev examples for {', '.join(short)}: using what there is")
    out = Path(config.output_dir)
    records = _prepare_output(out, config)
    done = {(r["repeat"], r["subject"], r["id"]) for r in records}
    todo = [(k, e, [d for d in e.docs if (k, e.info.handle, d.id) not in done])
            for k in range(config.n_times) for e in exams]
    todo = [(k, e, docs) for k, e, docs in todo if docs]
    if done:
        log(f"resuming: {len(done)} answers kept, {sum(len(d) for _, _, d in todo)} to go")
    if todo and backend is None:
        backend = open_backend(config.model, config.backend, dtype=config.dtype, device=config.device,
                               batch_size=config.batch_size, n_ctx=EXAM_CONTEXT,
                               trust_remote_code=config.trust_remote_code)
    total = sum(len(docs) for _, _, docs in todo)
    with tqdm(total=total, desc="exam", unit="q", disable=total == 0) as bar, \
            open(out / PREDICTIONS, "a", encoding="utf-8") as sink:
        for repeat, exam, docs in todo:
            bar.set_postfix_str(exam.info.handle)
            for start in range(0, len(docs), CHUNK):
                new = answer_chunk(backend, exam, docs[start:start + CHUNK], config, fmt, repeat)
                for record in new:
                    sink.write(json.dumps(record, ensure_ascii=False) + "\n")
                sink.flush()
                os.fsync(sink.fileno())
                records += new
                bar.update(len(new))
    meta = {"model": config.model, "data": config.data, "format": fmt, "split": config.split,
            "shots": config.shots, "with_prompt": config.with_prompt, "cot": config.cot, "n_times": config.n_times,
            "scoring": config.scoring, "scoring_modes": list(scoring_modes(config.scoring))}
    summary = summarize(records, [e.info for e in exams], meta)
    write_report(out, summary, records)
    legacy_outputs.write_takes(out, config, fmt, exams, records, log)
    return summary
