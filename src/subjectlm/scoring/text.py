"""Text scores of an answer against a reference (pure functions, pinned by tests/test_eval_qa.py).

- normalisation as SQuAD and CMRC 2018 do it: NFKC (full-width forms to ASCII), lowercase, every
  Unicode punctuation or symbol character (Chinese punctuation included) deleted, the English
  articles a/an/the removed, whitespace collapsed; then tokens: each CJK character is a token,
  other text splits into words on whitespace;
- exact: the normalised answer equals the normalised reference;
- contains: the reference's tokens appear contiguously in the answer's;
- f1: token-F1 between answer and reference (bag of tokens, as SQuAD's);
- key_fact_recall: the fraction of key facts the answer contains (None without key facts).

Used by closed-book QA (eval/qa/items.py) and the arena's reference judge (arena/judge_reference.py).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from typing import Any, Sequence

ARTICLES = re.compile(r"\b(a|an|the)\b")

# CJK scripts written without spaces: each character is one token (as CMRC 2018 scores Chinese).
_CJK_RANGES = (
    (0x3040, 0x30FF),    # Hiragana, Katakana
    (0x3400, 0x4DBF),    # CJK Unified Ideographs Extension A
    (0x4E00, 0x9FFF),    # CJK Unified Ideographs
    (0xF900, 0xFAFF),    # CJK Compatibility Ideographs
    (0x20000, 0x2FA1F),  # Extensions B-F and Compatibility Supplement
)


def is_cjk(ch: str) -> bool:
    code = ord(ch)
    return any(lo <= code <= hi for lo, hi in _CJK_RANGES)


def normalize_text(text: str) -> str:
    """NFKC, lowercase, punctuation and symbols (any script) deleted, articles removed, spaces collapsed."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(ch for ch in text if unicodedata.category(ch)[0] not in "PS")
    text = ARTICLES.sub(" ", text)
    return " ".join(text.split())


def answer_tokens(text: str) -> list[str]:
    """The normalised text as tokens: one per CJK character, one per whitespace-separated word otherwise."""
    tokens: list[str] = []
    for word in normalize_text(text).split():
        run = ""
        for ch in word:
            if is_cjk(ch):
                if run:
                    tokens.append(run)
                    run = ""
                tokens.append(ch)
            else:
                run += ch
        if run:
            tokens.append(run)
    return tokens


def contains_tokens(haystack: Sequence[str], needle: Sequence[str]) -> bool:
    """Whether `needle` occurs as a contiguous run of `haystack` (an empty needle never does)."""
    n = len(needle)
    if n == 0:
        return False
    return any(list(haystack[i:i + n]) == list(needle) for i in range(len(haystack) - n + 1))


def exact_match(answer: str, reference: str) -> bool:
    return answer_tokens(answer) == answer_tokens(reference)


def contains_match(answer: str, reference: str) -> bool:
    return contains_tokens(answer_tokens(answer), answer_tokens(reference))


def token_f1(answer: str, reference: str) -> float:
    """SQuAD's token-F1 over answer_tokens; 1.0 when both are empty, 0.0 when one is."""
    pred, ref = answer_tokens(answer), answer_tokens(reference)
    if not pred or not ref:
        return float(pred == ref)
    same = sum((Counter(pred) & Counter(ref)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def key_fact_recall(answer: str, key_facts: Sequence[str] | None) -> float | None:
    """The fraction of key facts contained in the answer; None when there are none."""
    if not key_facts:
        return None
    tokens = answer_tokens(answer)
    return sum(contains_tokens(tokens, answer_tokens(fact)) for fact in key_facts) / len(key_facts)


def answer_scores(answer: str, reference: str, key_facts: Sequence[str] | None = None) -> dict[str, Any]:
    """Every text score of one answer: exact, contains, f1, key_fact_recall."""
    return {"exact": float(exact_match(answer, reference)), "contains": float(contains_match(answer, reference)),
            "f1": token_f1(answer, reference), "key_fact_recall": key_fact_recall(answer, key_facts)}
