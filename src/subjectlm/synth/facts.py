"""Atomic facts from the teacher's reply, each kept only if its quote is found in its chunk.

The grounding check is what stops an invented fact reaching the training data and the exam: the
teacher must copy the words of the chunk that state the fact, and the copy must be in the chunk after
both are normalised (Unicode NFKC, which turns full-width letters, digits and punctuation half-width;
Chinese sentence punctuation and curly quotes to their ASCII forms; case; runs of whitespace to one
space). Leading and trailing punctuation of the quote is ignored, and a quote elided with `...` or `…`
is found when its parts are, in order.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections import Counter
from typing import Any

from subjectlm.synth.chunk import Chunk

# Punctuation NFKC leaves as it is, mapped to the ASCII a teacher may type instead.
_PUNCTUATION = str.maketrans({"。": ".", "、": ",", "「": '"', "」": '"', "『": '"', "』": '"', "“": '"', "”": '"',
                              "‘": "'", "’": "'", "—": "-", "–": "-", "·": "."})
_SPACE = re.compile(r"\s+")
_ELLIPSIS = re.compile(r"\.\.\.+|…+")
_EDGE = " \t\n.,;:!?\"'()[]"


@dataclasses.dataclass(frozen=True)
class Fact:
    id: str  # <chunk id>-f<n>
    chunk_id: str
    fact: str
    quote: str


def normalize(text: str) -> str:
    """What the grounding check compares: NFKC, ASCII punctuation, lower case, single spaces."""
    text = unicodedata.normalize("NFKC", text).translate(_PUNCTUATION).casefold()
    return _SPACE.sub(" ", text).strip()


def quote_in_chunk(quote: str, chunk_text: str) -> bool:
    """The normalised quote (its parts, in order, when elided) inside the normalised chunk."""
    haystack = normalize(chunk_text)
    parts = [p.strip(_EDGE) for p in _ELLIPSIS.split(normalize(quote))]
    parts = [p for p in parts if p]
    if not parts:
        return False
    at = 0
    for part in parts:
        found = haystack.find(part, at)
        if found < 0:
            return False
        at = found + len(part)
    return True


def _items(data: Any) -> list[Any] | None:
    if isinstance(data, dict):
        data = data.get("facts")
    return data if isinstance(data, list) else None


def grounded_facts(chunk: Chunk, data: Any, limit: int, drops: Counter) -> list[Fact]:
    """The facts of one reply that pass the check, at most `limit`; each one left out counted in `drops`."""
    items = _items(data)
    if items is None:
        drops["facts reply: no list of facts"] += 1
        return []
    kept: list[Fact] = []
    for item in items:
        fact = item.get("fact") if isinstance(item, dict) else None
        quote = item.get("quote") if isinstance(item, dict) else None
        if not isinstance(fact, str) or not fact.strip():
            drops["fact: no text"] += 1
        elif not isinstance(quote, str) or not quote.strip():
            drops["fact: no quote"] += 1
        elif not quote_in_chunk(quote, chunk.text):
            drops["fact: quote not in chunk"] += 1
        elif len(kept) >= limit:
            drops["fact: over facts_per_chunk"] += 1
        else:
            kept.append(Fact(f"{chunk.id}-f{len(kept)}", chunk.id, fact.strip(), quote.strip()))
    return kept
