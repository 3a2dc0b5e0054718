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

Cloze ("answer text") prompts, for `--scoring cloze`: the same header, item prefix
and cue, but no lettered options; each shot is followed by its correct option's
text, and each option's text is scored as the continuation of the question:

    以下是中国关于{科目}考试的单项选择题，请选出其中的正确答案。\n\n      header (unchanged)
    {q}\n答案：{correct option text}\n\n                              each shot
    {q}\n答案：                                                      the context
    {option text}                                                   each continuation

The header keeps its official words so that a letter prompt and a cloze prompt
differ only in the option lines and in what follows the cue. MMLU's continuation
is " " + text (its target delimiter), as its letter is " X".
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


# -- cloze: option text as the continuation -------------------------------------------------------

def correct_text(doc: ExamDoc) -> str:
    if doc.answer is None:
        raise ValueError(f"few-shot example {doc.subject}/{doc.id} has no answer")
    return doc.options[LETTERS.index(doc.answer)]


def cloze_question(s: PromptStyle, doc: ExamDoc) -> str:
    """The question without its options, ending with the cue after which an option's text is scored."""
    return s.item_prefix + doc.question + s.answer_cue


def cloze_shot(s: PromptStyle, doc: ExamDoc) -> str:
    """A solved example in cloze form: the question, the cue, the correct option's text and a blank line."""
    return cloze_question(s, doc) + s.target_delimiter + correct_text(doc) + "\n\n"


def cloze_prompt(s: PromptStyle, subject: str, shots: Sequence[ExamDoc], doc: ExamDoc) -> str:
    """The context of every option of `doc`: header, cloze shots in file order, the question."""
    return header(s, subject) + "".join(cloze_shot(s, x) for x in shots) + cloze_question(s, doc)


def cloze_continuations(s: PromptStyle, doc: ExamDoc) -> list[str]:
    """What is scored after the context, one per option: the delimiter, then the option's text."""
    return [s.target_delimiter + text for text in doc.options]


def neutral_context(s: PromptStyle) -> str:
    """The context of the unconditional log-prob in PMI scoring: the bare answer cue (答案：, Answer:)."""
    return s.answer_cue.lstrip("\n")


def cloze_chat_messages(s: PromptStyle, subject: str, shots: Sequence[ExamDoc], doc: ExamDoc) -> list[dict[str, str]]:
    """The `--with_prompt` cloze variant: each shot a user turn answered by its correct option's text.

    The options are then scored as the start of the assistant's reply (no delimiter:
    the template separates the turns).
    """
    messages: list[dict[str, str]] = []
    lead = header(s, subject)
    for x in shots:
        messages += [{"role": "user", "content": lead + cloze_question(s, x)},
                     {"role": "assistant", "content": correct_text(x)}]
        lead = ""
    messages.append({"role": "user", "content": lead + cloze_question(s, doc)})
    return messages
