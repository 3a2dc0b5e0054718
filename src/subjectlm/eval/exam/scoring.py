"""The scoring table: how the questions of one subject are answered, one scorer per way.

    letter   the official next-token letter: each letter's log-prob after the prompt (score_next)
    cot      chain of thought: generate greedily, then read the letter with a regex (extract.py)
    cloze    each option's text scored as the continuation of the question, four metrics (cloze.py)

`--scoring` picks the modes (cloze.py's SCORING: letter, cloze or both) and `--cot` answers the
letter mode with `cot` instead of `letter`. A scorer defined above this layer comes in as an entry
of the table `run_exam` is given: Chinese-LLaMA-Alpaca-3's one-token generation
(subjectlm.compat.cla3) is the letter entry of its copy of SCORERS.

Every scorer returns one Prediction per question (prediction.py); the cloze scorer's carry its
modes, which `answer_chunk` (runner.py) merges into the letter's.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

from subjectlm.eval.exam import prompts as P
from subjectlm.eval.exam.cloze import LETTER, score_cloze
from subjectlm.eval.exam.directory import SubjectExam
from subjectlm.eval.exam.extract import extract_choice
from subjectlm.eval.exam.prediction import Prediction

COT, CLOZE = "cot", "cloze"


@dataclasses.dataclass(frozen=True)
class Chunk:
    """Some questions of one subject, all answered with the same header and shots."""

    exam: SubjectExam
    docs: list[P.ExamDoc]
    config: Any  # the run's ExamConfig
    fmt: str
    repeat: int

    @property
    def shots(self) -> list[P.ExamDoc]:
        return self.exam.dev if self.config.shots < 0 else self.exam.dev[: self.config.shots]

    def record(self, doc: P.ExamDoc, **fields: Any) -> Prediction:
        """The prediction of one question (repeat, subject, id): what the scorer found."""
        return Prediction(self.repeat, self.exam.info.handle, doc.id, **fields)


@dataclasses.dataclass(frozen=True)
class Scorer:
    answer: Callable[[Any, Chunk], list[Prediction]]  # (backend, chunk) -> one prediction per question
    # The prompts it writes, kept in run_config.json: --resume continues a run only with the same ones.
    prompt_style: str = "default"


def _softmax(values: list[float]) -> list[float]:
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    total = sum(exps)
    return [e / total for e in exps]


def _texts(backend, chunk: Chunk, style: P.PromptStyle) -> tuple[list[Any], list[str]]:
    """(what to generate from, the prompts as text): a conversation goes to generate() as messages, so the
    backend renders it with the template and adds no second BOS."""
    config = chunk.config
    if config.with_prompt:
        conversations = [P.chat_messages(style, chunk.exam.info.name, chunk.shots, d, config.cot) for d in chunk.docs]
        return conversations, [backend.chat_prompt(c) for c in conversations]
    texts = [P.prompt(style, chunk.exam.info.name, chunk.shots, d, config.cot) for d in chunk.docs]
    return texts, texts


def answer_letter(backend, chunk: Chunk) -> list[Prediction]:
    """The official way: the log-prob of each answer letter as the next token."""
    style = P.style(chunk.fmt)
    _, texts = _texts(backend, chunk, style)
    letters = P.LETTERS[: len(chunk.docs[0].options)]
    # A chat template writes its own BOS; tokenizing it with special tokens would double it.
    scores = backend.score_next(texts, P.continuations(style, len(letters)),
                                add_special_tokens=not chunk.config.with_prompt)
    records = []
    for doc, logprobs in zip(chunk.docs, scores):
        pred = letters[max(range(len(letters)), key=lambda i: logprobs[i])]
        correct = None if doc.answer is None else pred == doc.answer
        records.append(chunk.record(
            doc, probs={k: round(p, 6) for k, p in zip(letters, _softmax(logprobs))},
            logprobs={k: round(v, 6) for k, v in zip(letters, logprobs)},
            prediction=pred, answer=doc.answer, correct=correct, modes={LETTER: {"prediction": pred, "correct": correct}}))
    return records


def answer_cot(backend, chunk: Chunk) -> list[Prediction]:
    """Chain of thought: a greedy completion, its letter read by regex (None when there is none: wrong)."""
    from subjectlm.backends import GenParams

    prompts, _ = _texts(backend, chunk, P.style(chunk.fmt))
    answers = backend.generate(prompts, GenParams(max_tokens=chunk.config.max_new_tokens))
    records = []
    for doc, reply in zip(chunk.docs, (a.text for a in answers)):
        pred = extract_choice(reply)
        records.append(chunk.record(doc, prediction=pred, answer=doc.answer,
                                    correct=None if doc.answer is None else pred == doc.answer, response=reply))
    return records


def answer_cloze(backend, chunk: Chunk) -> list[Prediction]:
    """Each option's text as the continuation: the four cloze modes (cloze.py)."""
    scored = score_cloze(backend, P.style(chunk.fmt), chunk.exam.info.name, chunk.shots, chunk.docs,
                         chunk.config.with_prompt)
    return [chunk.record(doc, answer=doc.answer, modes=s["modes"], cloze=s["cloze"]) for doc, s in zip(chunk.docs, scored)]


SCORERS: dict[str, Scorer] = {LETTER: Scorer(answer_letter), COT: Scorer(answer_cot), CLOZE: Scorer(answer_cloze)}
