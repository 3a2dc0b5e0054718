"""The judging prompt (a pure function, pinned by exact-string tests) and the verdict parser.

The prompt asks for the verdict *first*, as one of four bracketed tokens. Verdict-first lets a
local judge be read without free generation: we prefill the reply with `Verdict: [[` and
compare the probabilities of the four endings (judge_model.py, score mode). A judge that writes
free text (an endpoint, or generate mode) is parsed by `parse_verdict`, which accepts the
bracketed token and a few common looser forms, and returns None rather than guess.
"""

from __future__ import annotations

import re

# Winner values of a battle record. "both-bad" counts as a tie in the ratings (as in Chatbot Arena).
WINNERS = ("A", "B", "tie", "both-bad")

# What the judge writes for each winner, and the text after the prefill in score mode.
VERDICT_TOKENS = {"A": "[[A]]", "B": "[[B]]", "tie": "[[tie]]", "both-bad": "[[both bad]]"}
VERDICT_PREFILL = "Verdict: [["

JUDGE_SYSTEM = (
    "You are a strict, impartial judge of answers to questions about one subject. "
    "You compare two answers to the same question and say which is better."
)


def judge_user_message(question: str, answer_a: str, answer_b: str, reference: str | None = None) -> str:
    """The user turn of the judging conversation (exact text pinned by tests/test_arena_prompts.py)."""
    criteria = "Judge correctness first, then completeness, then clarity. The order of the answers and their length must not matter."
    if reference:
        criteria += " A reference answer is given: treat it as correct, and count any answer that contradicts it as wrong."
    parts = [
        "Compare the two answers to the question below.",
        criteria,
        "",
        "[Question]",
        question.strip(),
        "",
    ]
    if reference:
        parts += ["[Reference answer]", reference.strip(), ""]
    parts += [
        "[Answer A]",
        answer_a.strip(),
        "",
        "[Answer B]",
        answer_b.strip(),
        "",
        "Start your reply with the verdict, written exactly as one of:",
        "Verdict: [[A]] if answer A is better",
        "Verdict: [[B]] if answer B is better",
        "Verdict: [[tie]] if they are equally good",
        "Verdict: [[both bad]] if both are wrong or useless",
        "Then give one sentence of reason.",
    ]
    return "\n".join(parts)


def judge_messages(question: str, answer_a: str, answer_b: str, reference: str | None = None) -> list[dict[str, str]]:
    """The chat messages sent to a judge: a system turn and one user turn."""
    return [
        {"role": "system", "content": JUDGE_SYSTEM},
        {"role": "user", "content": judge_user_message(question, answer_a, answer_b, reference)},
    ]


_BRACKETED = re.compile(r"\[\[\s*(a|b|tie|both[\s_-]*bad)\s*\]\]", re.IGNORECASE)
_LABELLED = re.compile(
    r"(?:verdict|winner|better answer|final answer)[\s*]*(?:is)?[\s*]*[:：]?[\s*]*(?:answer\s+)?"
    r"(a|b|tie|both[\s_-]*bad)\b", re.IGNORECASE)
_SENTENCE = re.compile(r"\banswer\s+(a|b)\s+is\s+(?:clearly\s+)?better\b", re.IGNORECASE)
_BARE = re.compile(r"^\W*(a|b|tie|both[\s_-]*bad)\W*$", re.IGNORECASE)


def _winner(token: str) -> str:
    token = token.strip().lower()
    if token in ("a", "b"):
        return token.upper()
    return "tie" if token == "tie" else "both-bad"


def parse_verdict(text: str) -> str | None:
    """The winner a judge's reply names (one of WINNERS), or None when it names none clearly.

    Tried in order, first hit wins: a bracketed token `[[A]]`; a label such as `Verdict: B`
    or `Winner: tie`; the sentence `answer A is better`; a reply that is only `A`/`B`/`tie`.
    """
    for pattern in (_BRACKETED, _LABELLED, _SENTENCE):
        match = pattern.search(text)
        if match:
            return _winner(match.group(1))
    match = _BARE.match(text.strip())
    return _winner(match.group(1)) if match else None
