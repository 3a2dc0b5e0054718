"""Exam prompts, exactly as the official evaluation code of each benchmark writes them.

Pure functions: a document in, a string out. Tests pin every string, whitespace
included, because a changed character (a missing 考试, a space before the answer
letter) moves scores and makes numbers irreproducible.

Answer-only, C-Eval (hkust-nlp/ceval, the llama/"answer only" evaluator):

    以下是中国关于{科目}考试的单项选择题，请选出其中的正确答案。\n\n      header
    {q}\nA. {A}\nB. {B}\nC. {C}\nD. {D}\n答案：{X}\n\n                  each shot
    {q}\nA. {A}\nB. {B}\nC. {C}\nD. {D}\n答案：                        the question

The model's next token after the question is read: the letter comes directly
after the cue, with no space (`target_delimiter` ""). MMLU (hendrycks/test) puts
" X" after "Answer:", CMMLU (haonan-li/CMMLU) prefixes each item with 题目：.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

LETTERS = ("A", "B", "C", "D")


@dataclass(frozen=True)
class ExamDoc:
    """One multiple-choice question. `answer` is None on a test split without answers."""

    subject: str
    id: str
    question: str
    options: tuple[str, ...]
    answer: str | None = None
    explanation: str | None = None


@dataclass(frozen=True)
class PromptStyle:
    """How one benchmark words its prompt; see the module docstring for the shapes."""

    header: str            # formatted with {subject}: the subject's display name
    item_prefix: str       # before each question text
    answer_cue: str        # after the options, before the answer letter
    target_delimiter: str  # between the cue and the letter ("" or " ")
    cot_header: str
    cot_cue: str           # a question's cue in chain-of-thought mode
    cot_shot: str          # formatted with {explanation} and {answer}


STYLES: dict[str, PromptStyle] = {
    # hkust-nlp/ceval code/evaluator_series/evaluators (answer-only and CoT).
    "ceval": PromptStyle(
        header="以下是中国关于{subject}考试的单项选择题，请选出其中的正确答案。\n\n",
        item_prefix="",
        answer_cue="\n答案：",
        target_delimiter="",
        cot_header="以下是中国关于{subject}考试的单项选择题，请选出其中的正确答案。\n\n",
        cot_cue="\n答案：让我们一步一步思考，\n1.",
        cot_shot="\n答案：让我们一步一步思考，\n{explanation}\n所以答案是{answer}。\n\n",
    ),
    # haonan-li/CMMLU src/mp_utils.py (format_example, gen_prompt).
    "cmmlu": PromptStyle(
        header="以下是关于{subject}的单项选择题，请直接给出正确答案的选项。\n\n",
        item_prefix="题目：",
        answer_cue="\n答案是：",
        target_delimiter="",
        cot_header="以下是关于{subject}的单项选择题，请分析并选出正确答案。\n\n",
        cot_cue="\n逐步分析并给出答案选项。",
        cot_shot="\n答案是：{answer}\n\n",
    ),
    # hendrycks/test evaluate.py (format_subject, format_example, gen_prompt).
    "mmlu": PromptStyle(
        header="The following are multiple choice questions (with answers) about {subject}.\n\n",
        item_prefix="",
        answer_cue="\nAnswer:",
        target_delimiter=" ",
        cot_header="The following are multiple choice questions (with answers) about {subject}.\n\n",
        cot_cue="\nAnswer: Let's think step by step.",
        cot_shot="\nAnswer: Let's think step by step. {explanation} The answer is ({answer}).\n\n",
    ),
}


def style(fmt: str) -> PromptStyle:
    try:
        return STYLES[fmt]
    except KeyError:
        raise ValueError(f"unknown exam format {fmt!r}; known: {', '.join(STYLES)}") from None


def header(s: PromptStyle, subject: str, cot: bool = False) -> str:
    return (s.cot_header if cot else s.header).format(subject=subject)


def item(s: PromptStyle, doc: ExamDoc) -> str:
    """Question text and lettered options, without any answer cue."""
    lines = [s.item_prefix + doc.question]
    lines += [f"{letter}. {text}" for letter, text in zip(LETTERS, doc.options)]
    return "\n".join(lines)


def shot(s: PromptStyle, doc: ExamDoc, cot: bool = False) -> str:
    """A solved example: the item, the cue, the answer letter and a blank line."""
    if doc.answer is None:
        raise ValueError(f"few-shot example {doc.subject}/{doc.id} has no answer")
    if cot and doc.explanation:
        return item(s, doc) + s.cot_shot.format(explanation=doc.explanation.strip(), answer=doc.answer)
    return item(s, doc) + s.answer_cue + s.target_delimiter + doc.answer + "\n\n"


def question(s: PromptStyle, doc: ExamDoc, cot: bool = False) -> str:
    """The item to answer, ending with the cue after which the letter is read."""
    return item(s, doc) + (s.cot_cue if cot else s.answer_cue)


def prompt(s: PromptStyle, subject: str, shots: Sequence[ExamDoc], doc: ExamDoc, cot: bool = False) -> str:
    """The plain (base-model) prompt: header, shots in their file order, question."""
    return header(s, subject, cot) + "".join(shot(s, x, cot) for x in shots) + question(s, doc, cot)


def continuations(s: PromptStyle, n_options: int = 4) -> list[str]:
    """What follows the cue for each option: "A" for C-Eval/CMMLU, " A" for MMLU."""
    return [s.target_delimiter + letter for letter in LETTERS[:n_options]]


def chat_messages(s: PromptStyle, subject: str, shots: Sequence[ExamDoc], doc: ExamDoc,
                  cot: bool = False) -> list[dict[str, str]]:
    """The `--with_prompt` variant: each shot a user turn answered by an assistant turn.

    The header opens the first user turn. The user turn keeps the answer cue so the
    assistant's first token is the letter, read exactly as in the plain prompt.
    """
    messages: list[dict[str, str]] = []
    lead = header(s, subject, cot)
    for x in shots:
        if cot and x.explanation:
            reply = s.cot_shot.format(explanation=x.explanation.strip(), answer=x.answer)
            messages += [{"role": "user", "content": lead + item(s, x) + s.cot_cue},
                         {"role": "assistant", "content": reply.strip()}]
        else:
            messages += [{"role": "user", "content": lead + item(s, x) + s.answer_cue},
                         {"role": "assistant", "content": str(x.answer)}]
        lead = ""
    messages.append({"role": "user", "content": lead + question(s, doc, cot)})
    return messages
