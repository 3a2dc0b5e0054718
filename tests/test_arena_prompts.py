"""The judging prompt, pinned as exact strings, and the verdict parser on a table of replies."""

import pytest

from subjectlm.arena.prompts import JUDGE_SYSTEM, judge_messages, judge_user_message, parse_verdict

TAIL = ("Start your reply with the verdict, written exactly as one of:\n"
        "Verdict: [[A]] if answer A is better\n"
        "Verdict: [[B]] if answer B is better\n"
        "Verdict: [[tie]] if they are equally good\n"
        "Verdict: [[both bad]] if both are wrong or useless\n"
        "Then give one sentence of reason.")


def test_prompt_with_reference_exact():
    assert judge_user_message("What is 2+2?", "4", "Five.", "Four.") == (
        "Compare the two answers to the question below.\n"
        "Judge correctness first, then completeness, then clarity. The order of the answers and their length must "
        "not matter. A reference answer is given: treat it as correct, and count any answer that contradicts it as "
        "wrong.\n\n"
        "[Question]\nWhat is 2+2?\n\n"
        "[Reference answer]\nFour.\n\n"
        "[Answer A]\n4\n\n"
        "[Answer B]\nFive.\n\n" + TAIL)


def test_prompt_without_reference_strips_whitespace():
    assert judge_user_message(" Q \n", "a\n", "  b") == (
        "Compare the two answers to the question below.\n"
        "Judge correctness first, then completeness, then clarity. The order of the answers and their length must "
        "not matter.\n\n"
        "[Question]\nQ\n\n"
        "[Answer A]\na\n\n"
        "[Answer B]\nb\n\n" + TAIL)
    # An empty reference is no reference.
    assert judge_user_message("Q", "a", "b", "") == judge_user_message("Q", "a", "b", None)


def test_messages_are_system_then_user():
    messages = judge_messages("Q", "a", "b", "r")
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["content"] == JUDGE_SYSTEM
    assert messages[1]["content"] == judge_user_message("Q", "a", "b", "r")


@pytest.mark.parametrize("reply, winner", [
    ("Verdict: [[A]]\nA names the right rock.", "A"),
    ("Verdict: [[B]] because A is wrong", "B"),
    ("[[tie]]", "tie"),
    ("Verdict: [[both bad]] neither mentions the gabbro", "both-bad"),
    ("[[ Both_Bad ]]", "both-bad"),
    ("[[b]]", "B"),
    ("After thinking: A is vague. Verdict: [[B]]. Later I say [[A]]", "B"),  # the first bracketed token wins
    ("Verdict: B", "B"),
    ("**Verdict:** **A**", "A"),
    ("Winner: tie", "tie"),
    ("The better answer is: Answer A", "A"),
    ("I think answer B is clearly better.", "B"),
    ("A", "A"),
    (" tie. ", "tie"),
    ("", None),
    ("Both answers discuss rocks.", None),
    ("Answer A says 4.2 million years; answer B says granite.", None),
])
def test_parse_verdict(reply, winner):
    assert parse_verdict(reply) == winner
