"""Multiple-choice rows from exam items: correct letters balanced over A-D, options in seeded order.

A model that always answers one letter, or always the longest option, should score what chance gives.
Letters: within each subject, the items in a seeded order take A, B, C, D, A, ... in turn, so the four
counts differ by at most one. The share of rows whose correct option is strictly the longest is
reported (a known multiple-choice artefact; chance is 1/4).
"""

from __future__ import annotations

import dataclasses
import random
from typing import Sequence

LETTERS = ("A", "B", "C", "D")


@dataclasses.dataclass(frozen=True)
class ExamItem:
    id: str  # the fact's id
    category: str  # taught or control
    question: str
    short_answer: str
    answer: str  # the sentence: the QA reference
    distractors: tuple[str, str, str]


@dataclasses.dataclass(frozen=True)
class ExamRow:
    item: ExamItem
    options: tuple[str, str, str, str]
    letter: str


def balanced_rows(items: Sequence[ExamItem], seed: int) -> list[ExamRow]:
    """One row per item, in the items' order; letters balanced over the items, distractors shuffled."""
    rng = random.Random(seed)
    order = list(range(len(items)))
    rng.shuffle(order)
    letters = [""] * len(items)
    for turn, index in enumerate(order):
        letters[index] = LETTERS[turn % 4]
    rows = []
    for item, letter in zip(items, letters):
        wrong = list(item.distractors)
        rng.shuffle(wrong)
        at = LETTERS.index(letter)
        options = tuple(wrong[:at] + [item.short_answer] + wrong[at:])
        rows.append(ExamRow(item, options, letter))
    return rows


def longest_correct_share(rows: Sequence[ExamRow]) -> float:
    """Share of rows whose correct option is longer than every other option (in characters)."""
    if not rows:
        return 0.0
    longest = 0
    for row in rows:
        correct = len(row.options[LETTERS.index(row.letter)])
        if all(correct > len(o) for i, o in enumerate(row.options) if LETTERS[i] != row.letter):
            longest += 1
    return longest / len(rows)


def dev_count(n: int, dev_shots: int) -> int:
    """Rows of a subject that go to dev/ as few-shot examples: at most a quarter of them."""
    return min(dev_shots, n // 4)
