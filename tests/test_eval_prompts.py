"""Exam prompts are exactly the official ones, whitespace included."""

from __future__ import annotations

import pytest

from subjectlm.eval.exam import prompts as P
from subjectlm.eval.exam.extract import extract_choice

Q1 = P.ExamDoc("logic", "0", "1+1=____", ("1", "2", "3", "4"), "B", "1. 一加一等于二。")
Q2 = P.ExamDoc("logic", "1", "2+2=____", ("4", "5", "6", "7"), "A")
Q3 = P.ExamDoc("logic", "7", "3+3=____", ("5", "6", "7", "8"))


def test_ceval_answer_only_prompt_exact():
    s = P.style("ceval")
    assert P.header(s, "逻辑学") == "以下是中国关于逻辑学考试的单项选择题，请选出其中的正确答案。\n\n"
    assert P.shot(s, Q1) == "1+1=____\nA. 1\nB. 2\nC. 3\nD. 4\n答案：B\n\n"
    assert P.question(s, Q3) == "3+3=____\nA. 5\nB. 6\nC. 7\nD. 8\n答案："
    assert P.prompt(s, "逻辑学", [Q1, Q2], Q3) == (
        "以下是中国关于逻辑学考试的单项选择题，请选出其中的正确答案。\n\n"
        "1+1=____\nA. 1\nB. 2\nC. 3\nD. 4\n答案：B\n\n"
        "2+2=____\nA. 4\nB. 5\nC. 6\nD. 7\n答案：A\n\n"
        "3+3=____\nA. 5\nB. 6\nC. 7\nD. 8\n答案："
    )
    assert P.continuations(s) == ["A", "B", "C", "D"]  # no space before the letter


def test_ceval_cot_prompt_exact():
    s = P.style("ceval")
    assert P.shot(s, Q1, cot=True) == (
        "1+1=____\nA. 1\nB. 2\nC. 3\nD. 4\n答案：让我们一步一步思考，\n1. 一加一等于二。\n所以答案是B。\n\n")
    assert P.question(s, Q3, cot=True) == "3+3=____\nA. 5\nB. 6\nC. 7\nD. 8\n答案：让我们一步一步思考，\n1."


def test_mmlu_prompt_exact():
    s = P.style("mmlu")
    doc = P.ExamDoc("high_school_physics", "0", "What is 1+1?", ("1", "2", "3", "4"), "B")
    assert P.prompt(s, "high school physics", [doc], doc) == (
        "The following are multiple choice questions (with answers) about high school physics.\n\n"
        "What is 1+1?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer: B\n\n"
        "What is 1+1?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer:"
    )
    assert P.continuations(s) == [" A", " B", " C", " D"]


def test_cmmlu_prompt_exact():
    s = P.style("cmmlu")
    assert P.prompt(s, "逻辑学", [Q2], Q3) == (
        "以下是关于逻辑学的单项选择题，请直接给出正确答案的选项。\n\n"
        "题目：2+2=____\nA. 4\nB. 5\nC. 6\nD. 7\n答案是：A\n\n"
        "题目：3+3=____\nA. 5\nB. 6\nC. 7\nD. 8\n答案是："
    )


def test_chat_messages_shots_as_turns():
    s = P.style("ceval")
    messages = P.chat_messages(s, "逻辑学", [Q1, Q2], Q3)
    assert messages == [
        {"role": "user", "content": "以下是中国关于逻辑学考试的单项选择题，请选出其中的正确答案。\n\n"
                                    "1+1=____\nA. 1\nB. 2\nC. 3\nD. 4\n答案："},
        {"role": "assistant", "content": "B"},
        {"role": "user", "content": "2+2=____\nA. 4\nB. 5\nC. 6\nD. 7\n答案："},
        {"role": "assistant", "content": "A"},
        {"role": "user", "content": "3+3=____\nA. 5\nB. 6\nC. 7\nD. 8\n答案："},
    ]
    zero_shot = P.chat_messages(s, "逻辑学", [], Q3)
    assert zero_shot == [{"role": "user", "content": P.header(s, "逻辑学") + P.question(s, Q3)}]


def test_shot_without_answer_is_an_error():
    with pytest.raises(ValueError, match="no answer"):
        P.shot(P.style("ceval"), Q3)


@pytest.mark.parametrize("text, letter", [
    ("B", "B"),
    ("C. 6", "C"),
    ("首先计算3+3=6，所以答案是B。", "B"),
    ("分析……答案为：D", "D"),
    ("因此选 A", "A"),
    ("The answer is (C).", "C"),
    ("只有选项 D 符合", "D"),
    ("无法判断", None),
    ("A和B都不对，C也不对", None),
])
def test_extract_choice(text, letter):
    assert extract_choice(text) == letter
