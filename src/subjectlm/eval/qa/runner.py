"""`subjectlm eval qa`: a model answers closed-book questions; each answer is scored against its reference.

    subjectlm eval qa --model runs/merged --data examples/data/qa.jsonl --output_dir runs/qa
    subjectlm eval qa --model runs/merged --base_model default --data qa.jsonl --output_dir runs/qa

The model answers greedily, through subjectlm.backends (a model directory on transformers, a .gguf
on llama.cpp): the question as the user turn of its chat template when the model has one (`--chat
auto`), else `Question: …\\nAnswer:` (the answer ends where the model starts a new question). Text
scores are those of scoring/text.py. The reference's log-likelihood is teacher-forced through the
backends' `loglikelihood` (no generation; the most sensitive score, since it moves before an answer's
wording does): the summed log-probability of the reference's tokens after the prompt, and its mean
per token. Tokens are split as lm-eval splits them (the prompt, and prompt + reference, tokenized
apart; the reference is what the whole adds after the prompt's tokens), except that the chat
template's trailing newline stays with the prompt.

Outputs in output_dir: predictions.jsonl (appended batch by batch and fsynced, so `--resume`
continues a crashed run; a torn last line is cut off), summary.json and report.md (written
atomically at the end). With `--base_model`, output_dir/model and output_dir/base hold the two
runs and output_dir/compare.json, compare.md the paired comparison (bootstrap CI, sign test).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable, Sequence

from subjectlm.backends.spec import (
    OpensModel,
    backend_option,
    batch_size_option,
    device_option,
    dtype_option,
    model_option,
    n_ctx_option,
    trust_remote_code_option,
)
from subjectlm.config import ConfigError, check_options, option, to_dict
from subjectlm.eval.qa import items as Q
from subjectlm.io import append_jsonl, prepare_output, read_jsonl, write_json, write_text
from subjectlm.scoring.text import answer_scores

PREDICTIONS = "predictions.jsonl"
SCORES = ("exact", "contains", "f1", "key_fact_recall", "ref_logprob")
CHAT_MODES = ("auto", "on", "off")
# Settings that must match for --resume to continue an earlier run.
RESUME_KEYS = ("model", "data", "format", "split", "subjects", "limit", "chat", "max_new_tokens")


@dataclasses.dataclass(kw_only=True)
class QAConfig(OpensModel):
    model: str = model_option()
    backend: str = backend_option()
    n_ctx: int = n_ctx_option()
    data: str = option(help="QA JSON lines ({id, question, reference, key_facts?}) or an exam directory "
                            "(its questions alone, the correct option's text as reference)")
    base_model: str | None = option(None, help="also answer with this model and compare the two "
                                               "(output_dir/model, output_dir/base, output_dir/compare.md)")
    format: str = option("auto", help="exam layout when data is an exam directory",
                         choices=("auto", "ceval", "cmmlu", "mmlu"))
    split: str = option("val", help="exam split when data is an exam directory", choices=("dev", "val", "test"))
    subjects: list[str] = option([], help="exam subjects when data is an exam directory (default: all)")
    limit: int | None = option(None, help="answer only the first N questions", min=1)
    chat: str = option("auto", help="auto (the chat template when the tokenizer has one), on, or off "
                                    "(plain `Question: ...\\nAnswer:`)", choices=CHAT_MODES)
    max_new_tokens: int = option(64, help="longest answer, in tokens (a reference is one sentence)", min=1)
    batch_size: int = batch_size_option("questions per forward pass / generate call")
    n_bootstrap: int = option(2000, help="bootstrap rounds of the comparison's confidence intervals", min=1)
    seed: int = option(0, help="bootstrap seed")
    dtype: str = dtype_option()
    device: str | None = device_option()
    output_dir: str = option("runs/qa", help="where predictions, summary and report go")
    resume: bool = option(False, help="continue an interrupted run in output_dir, skipping answered questions")
    overwrite: bool = option(False, help="replace an existing output_dir")
    trust_remote_code: bool = trust_remote_code_option()

    def __post_init__(self):
        check_options(self)


def load_items(config: QAConfig, log: Callable[[str], None] = print) -> list[Q.QAItem]:
    """The questions: a QA file, or an exam directory's answered questions (skips counted)."""
    if Path(config.data).is_dir():
        items, skipped = Q.items_from_exam(config.data, config.format, config.split, config.subjects)
        if skipped:
            log(f"note: {skipped} exam question(s) without an answer (or with an empty answer option) skipped")
        if not items:
            raise ConfigError(f"data: {config.data} ({config.split} split) has no answered questions")
    else:
        items = Q.read_qa_file(config.data)
    return items[: config.limit] if config.limit else items


def uses_chat(tokenizer, chat: str) -> bool:
    """Whether prompts go through the chat template: `auto` when the tokenizer has one."""
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if chat == "on" and not has_template:
        raise ConfigError("chat: on, but the tokenizer has no chat template")
    return has_template if chat == "auto" else chat == "on"


def template_holder(backend):
    """What knows the backend's chat template (`.chat_template`): the tokenizer, or the GGUF's own."""
    tokenizer = getattr(backend, "tokenizer", None)
    return tokenizer if tokenizer is not None else backend.scorer.template


class QAModel:
    """One model (any backend of subjectlm.backends: a model directory, or a .gguf through llama.cpp)
    asked the questions: its greedy answers, and the log-likelihood of each reference after the same
    prompt (the backends' `loglikelihood`)."""

    def __init__(self, backend, chat: str = "auto"):
        self.backend = backend
        self.model, self.tokenizer = getattr(backend, "model", None), getattr(backend, "tokenizer", None)
        self.device = getattr(backend, "device", None)
        self.chat = uses_chat(template_holder(backend), chat)

    @classmethod
    def load(cls, path: str, config: QAConfig) -> "QAModel":
        from subjectlm.backends import open_backend

        backend = open_backend(config.model_spec(model=path))
        return cls(backend, config.chat)

    def prompt(self, question: str):
        """Chat messages (rendered by the backend with the model's template) or a plain completion prompt."""
        return Q.qa_messages(question) if self.chat else Q.plain_prompt(question)

    def reference_logprobs(self, items: Sequence[Q.QAItem]) -> list[tuple[float, int]]:
        """(sum of log-probs, token count) of each item's reference after its prompt.

        Chat: the reference follows the rendered template (which writes its own BOS) and the template's
        trailing newline stays the template's; plain: `Question: ...\nAnswer:` then a space and the
        reference, with the tokenizer's special tokens."""
        if self.chat:
            contexts = [self.backend.chat_prompt(Q.qa_messages(item.question)) for item in items]
            references = [[item.reference.strip()] for item in items]
        else:
            contexts = [Q.plain_prompt(item.question) for item in items]
            references = [[Q.plain_continuation(item.reference)] for item in items]
        rows = self.backend.loglikelihood(contexts, references, add_special_tokens=not self.chat,
                                          move_whitespace=False)
        return [(row[0].logprob, row[0].tokens) for row in rows]

    def answers(self, items: Sequence[Q.QAItem], max_new_tokens: int) -> list[dict[str, Any]]:
        """Greedy answers (one left-padded batch): {"answer", "answer_tokens", "finished"} per item."""
        from subjectlm.backends import GenParams

        params = GenParams(max_tokens=max_new_tokens, temperature=0.0, stop=[] if self.chat else [Q.PLAIN_STOP])
        replies = self.backend.generate([self.prompt(item.question) for item in items], params)
        # An answer cut at max_new_tokens can end inside a multi-byte character: drop the replacement mark.
        return [{"answer": r.text.rstrip("\ufffd").strip(), "answer_tokens": r.completion_tokens,
                 "finished": r.finish_reason == "stop"} for r in replies]


def score_batch(qa_model: QAModel, items: Sequence[Q.QAItem], max_new_tokens: int) -> list[dict[str, Any]]:
    """One prediction record per item: the answer, its text scores and the reference's log-likelihood."""
    records = []
    for item, gen, (total, n) in zip(items, qa_model.answers(items, max_new_tokens), qa_model.reference_logprobs(items)):
        records.append({"id": item.id, "question": item.question, "reference": item.reference,
                        "key_facts": list(item.key_facts), **gen,
                        **answer_scores(gen["answer"], item.reference, item.key_facts),
                        "ref_logprob": total / n, "ref_logprob_sum": total, "ref_tokens": n})
    return records


def read_predictions(path: Path, repair: bool = False) -> list[dict[str, Any]]:
    """Every complete record; with `repair`, a torn last line (a crash mid-write) is cut off the file."""
    return read_jsonl(path, repair=repair, missing_ok=True)


def _settings(config: QAConfig, model: str) -> dict[str, Any]:
    return {**{k: to_dict(config)[k] for k in RESUME_KEYS}, "model": model}


def _prepare_output(out: Path, settings: dict[str, Any], config: QAConfig) -> list[dict[str, Any]]:
    """Check out against resume/overwrite; return the predictions to keep."""
    exists = prepare_output(out, config.overwrite, config.resume)
    if exists and config.resume:
        saved = out / "run_config.json"
        if saved.is_file():
            before = json.loads(saved.read_text(encoding="utf-8"))
            changed = [k for k in settings if before.get(k) != settings[k]]
            if changed:
                raise ConfigError(f"resume: {out} was run with other settings ({', '.join(changed)}); "
                                  "use a new output_dir or --overwrite")
        return read_predictions(out / PREDICTIONS, repair=True)
    out.mkdir(parents=True, exist_ok=True)
    for name in (PREDICTIONS, "summary.json", "report.md"):
        (out / name).unlink(missing_ok=True)  # nothing of an overwritten run may linger
    write_json(out / "run_config.json", settings)
    return []


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarize(records: Sequence[dict[str, Any]], meta: dict[str, Any]) -> dict[str, Any]:
    scores = {s: _mean([r[s] for r in records if r.get(s) is not None]) for s in SCORES}
    return {**meta, "n": len(records), "n_with_key_facts": sum(1 for r in records if r.get("key_facts")),
            "unfinished": sum(1 for r in records if not r.get("finished", True)), "scores": scores}


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _cell(text: str, width: int = 80) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= width else text[: width - 1] + "…"


def render_markdown(summary: dict[str, Any], records: Sequence[dict[str, Any]] = (), rows: int = 20) -> str:
    lines = [f"# Closed-book QA: {summary['model']}", "",
             f"{summary['n']} questions from `{summary['data']}` ({'chat template' if summary['chat'] else 'plain prompt'}; "
             f"{summary['n_with_key_facts']} with key facts; {summary['unfinished']} answers cut at max_new_tokens).", "",
             "| score | mean |", "|---|---:|"]
    lines += [f"| {s} | {_fmt(summary['scores'][s])} |" for s in SCORES]
    if records:
        lines += ["", f"## First {min(rows, len(records))} answers", "",
                  "| id | answer | reference | f1 | key facts | ref log-lik |", "|---|---|---|---:|---:|---:|"]
        lines += [f"| {r['id']} | {_cell(r['answer'])} | {_cell(r['reference'])} | {r['f1']:.2f} | "
                  f"{_fmt(r['key_fact_recall'], 2)} | {r['ref_logprob']:.3f} |" for r in records[:rows]]
    return "\n".join(lines) + "\n"


def _template_only(model: str, config: QAConfig):
    """The chat template's holder without loading weights: the tokenizer, or a GGUF's vocabulary alone."""
    if str(model).endswith(".gguf"):
        from subjectlm.backends.llamacpp import open_llama
        from subjectlm.backends.score_llamacpp import GGUFTemplate

        llm = open_llama(model, vocab_only=True)
        try:
            return GGUFTemplate(llm)
        finally:
            llm.close()
    from subjectlm.models import load_tokenizer

    return load_tokenizer(model, trust_remote_code=config.trust_remote_code)


def run_one(config: QAConfig, model: str, out: Path, items: Sequence[Q.QAItem],
            log: Callable[[str], None] = print, qa_model: QAModel | None = None) -> dict[str, Any]:
    """Answer and score `items` with one model into `out`; return its summary."""
    from tqdm.auto import tqdm

    records = _prepare_output(out, _settings(config, model), config)
    done = {r["id"] for r in records}
    todo = [item for item in items if item.id not in done]
    if done:
        log(f"resuming {out}: {len(done)} answers kept, {len(todo)} to go")
    if todo and qa_model is None:
        qa_model = QAModel.load(model, config)
    with tqdm(total=len(todo), desc=f"qa {Path(model).name}", unit="q", disable=not todo) as bar:
        for start in range(0, len(todo), config.batch_size):
            new = score_batch(qa_model, todo[start:start + config.batch_size], config.max_new_tokens)
            for record in new:
                append_jsonl(out / PREDICTIONS, record)
            records += new
            bar.update(len(new))
    order = {item.id: i for i, item in enumerate(items)}
    records = sorted((r for r in records if r["id"] in order), key=lambda r: order[r["id"]])
    if qa_model is not None:
        chat = qa_model.chat
    else:  # everything was answered before: the tokenizer (or the GGUF's metadata) alone says how
        chat = uses_chat(_template_only(model, config), config.chat)
    summary = summarize(records, {"model": model, "data": config.data, "chat": chat})
    write_json(out / "summary.json", summary)
    write_text(out / "report.md", render_markdown(summary, records))
    return summary


def run_qa(config: QAConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Answer with the model (and the base model, then compare); return the summary, or with a base
    model {"model": summary, "base": summary, "compare": comparison}."""
    from subjectlm.eval.qa.compare import compare_qa_runs

    items = load_items(config, log)
    out = Path(config.output_dir)
    if config.base_model is None:
        return run_one(config, config.model, out, items, log)
    tuned = run_one(config, config.model, out / "model", items, log)
    base = run_one(config, config.base_model, out / "base", items, log)
    comparison = compare_qa_runs(out / "base", out / "model", out, config.n_bootstrap, config.seed)
    return {"model": tuned, "base": base, "compare": comparison}
