"""C-Eval prompts as Chinese-LLaMA-Alpaca-3's `scripts/ceval` wrote them (`--prompt_style cla3`).

Pure functions, a document in, a string out, so numbers published with those scripts can be
reproduced. Our default style (eval/exam/prompts.py) renders `--with_prompt` with the model's own chat
template; this one hard-codes the Llama 3 chat format and system prompt the old script used:

    plain, any shots   header + shot* + question                      (shots only with few_shot)
    chat, zero-shot    SYS(system) + USER(header + question)
    chat, few-shot     BOT + SYS(system) + USER(header) + 好的，我会结合{科目}相关知识回答<|eot_id|>
                       + (USER(shot question) + answer<|eot_id|>)* + USER(question)

where USER(x) ends with the assistant header, so the next token is the model's answer. The old
script tokenized every one of these *with* the tokenizer's special tokens, so a Llama 3 tokenizer
puts a second <|begin_of_text|> before the few-shot chat prompt's own: `TOKENIZE_WITH_SPECIAL_TOKENS`
keeps that, since the aim is the old numbers, not the cleanest input.
"""

from __future__ import annotations

from typing import Sequence

from subjectlm.eval.exam.prompts import LETTERS, ExamDoc

SYSTEM_PROMPT = "You are a helpful assistant. 你是一个乐于助人的助手。"
BEGIN = "<|begin_of_text|>"
TOKENIZE_WITH_SPECIAL_TOKENS = True  # the old script called tokenizer(text) with its defaults

# The old evaluator names subjects from its own table, which equals the Chinese names of
# subject_mapping.json except for this one (its name lacks 体系).
SUBJECT_NAME_OVERRIDES = {"mao_zedong_thought": "毛泽东思想和中国特色社会主义理论概论"}


def system_turn(content: str) -> str:
    return f"<|start_header_id|>system<|end_header_id|>\n\n{content}<|eot_id|>"


def user_turn(content: str) -> str:
    """A user turn followed by the assistant header: what the model reads before answering."""
    return (f"<|start_header_id|>user<|end_header_id|>\n\n{content}<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n")


def assistant_reply(content: str) -> str:
    return f"{content}<|eot_id|>"


def subject_name(handle: str, mapped_name: str) -> str:
    """The name the old prompts use for a subject (its Chinese name, with the one override)."""
    return SUBJECT_NAME_OVERRIDES.get(handle, mapped_name)


def header(subject: str) -> str:
    return f"以下是中国关于{subject}考试的单项选择题，请选出其中的正确答案。\n\n"


def item(doc: ExamDoc) -> str:
    """The question and its four lettered options."""
    return doc.question + "".join(f"\n{letter}. {text}" for letter, text in zip(LETTERS, doc.options))


def question(doc: ExamDoc) -> str:
    return item(doc) + "\n答案："


def shot(doc: ExamDoc) -> str:
    if doc.answer is None:
        raise ValueError(f"few-shot example {doc.subject}/{doc.id} has no answer")
    return question(doc) + doc.answer + "\n\n"


def plain_prompt(subject: str, shots: Sequence[ExamDoc], doc: ExamDoc) -> str:
    """`--with_prompt False`: header, the shots in file order, the question."""
    return header(subject) + "".join(shot(x) for x in shots) + question(doc)


def chat_prompt(subject: str, shots: Sequence[ExamDoc], doc: ExamDoc, few_shot: bool) -> str:
    """`--with_prompt True`: the Llama 3 chat format with the old system prompt (see the module docstring).

    `few_shot` is the old `--few_shot` switch: with it, the header is a user turn of its own
    (answered with the fixed 好的… reply) even when no shot follows (`--ntrain 0`)."""
    if not few_shot:
        return system_turn(SYSTEM_PROMPT) + user_turn(header(subject) + question(doc))
    text = (BEGIN + system_turn(SYSTEM_PROMPT) + user_turn(header(subject))
            + assistant_reply(f"好的，我会结合{subject}相关知识回答"))
    for x in shots:
        if x.answer is None:
            raise ValueError(f"few-shot example {x.subject}/{x.id} has no answer")
        text += user_turn(question(x)) + assistant_reply(x.answer)
    return text + user_turn(question(doc))


def prompt(subject: str, shots: Sequence[ExamDoc], doc: ExamDoc, few_shot: bool, with_prompt: bool) -> str:
    """The old script's input text for one question (`shots` is empty unless `few_shot`)."""
    if with_prompt:
        return chat_prompt(subject, shots if few_shot else (), doc, few_shot)
    return plain_prompt(subject, shots if few_shot else (), doc)
