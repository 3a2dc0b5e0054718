"""Tolerant JSON from a model's reply: what teachers actually send when asked for JSON.

Tried in order, the first that parses wins:
1. the reply without reasoning (`<think>…</think>`), as it is;
2. each fenced block (```json … ``` or ``` … ```);
3. the first `{` or `[` to its matching bracket (prose before and after ignored);
each of these also with trailing commas removed (`[1, 2,]`, `{"a": 1,}`), and, when the text ends inside the
value (the reply hit max_tokens), cut back to the last complete element and closed: `{"facts": ["a", "b` gives
`{"facts": ["a"]}`. A partial string is never kept as if it were whole, and a repair that keeps nothing but
empty containers (`{"facts": []}`) is no repair: the reply counts as not parsed.
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterator

from subjectlm.backends.openai import strip_reasoning

_FENCE = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\n?(.*?)(?:```|\Z)", re.DOTALL)
_CLOSE = {"{": "}", "[": "]"}
_OPEN = re.compile(r"[{\[]")


class ReplyNotJSON(ValueError):
    """No JSON value could be read from a reply; the message says what was tried."""


def parse_json_reply(text: str) -> Any:
    """The JSON value in a model's reply (see the module docstring); ReplyNotJSON if there is none."""
    text = strip_reasoning(text)
    if not text:
        raise ReplyNotJSON("empty reply")
    candidates = [text] + [m.group(1) for m in _FENCE.finditer(text)]
    for candidate in candidates:
        value = _parse(candidate.strip())
        if value is not _NONE:
            return value
    if not any(c in text for c in "{["):
        raise ReplyNotJSON("no JSON object or array in the reply")
    raise ReplyNotJSON("the JSON in the reply does not parse, even repaired")


_NONE = object()


def _parse(text: str, starts_tried: int = 16) -> Any:
    """`text` as JSON, or the first bracketed value in it that parses (repaired if need be; the first
    `starts_tried` brackets are tried, as prose may hold some); _NONE when nothing parses."""
    for attempt in (text, drop_trailing_commas(text)):
        try:
            return json.loads(attempt)
        except ValueError:
            pass
    starts, end = [m.start() for m in _OPEN.finditer(text)][:starts_tried], 0
    for start in starts:
        if start < end:
            continue  # inside a value already tried: a fragment of it is not the reply's value
        span, closers, cuts = scan(text, start)
        end = start + len(span)
        if not closers:  # a complete bracketed value with prose around it
            for attempt in (span, drop_trailing_commas(span)):
                try:
                    return json.loads(attempt)
                except ValueError:
                    pass
            continue
        value = repair_truncated(span, cuts)
        if value is not _NONE:
            return value
    return _NONE


def _outside_strings(text: str, start: int = 0) -> Iterator[tuple[int, str]]:
    """(position, character) of each character of `text` from `start` that is not inside a JSON string: the
    brackets, commas, spaces and scalars between strings, and each string's two quotes (an escaped quote
    does not close one)."""
    in_string = escaped = False
    for i in range(start, len(text)):
        c = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
                yield i, c
        else:
            in_string = c == '"'
            yield i, c


def scan(text: str, start: int) -> tuple[str, str, list[tuple[int, str]]]:
    """From the bracket at `start`: the span up to its matching bracket (or the end of the text), the closers
    still missing at the end of the span, and the places where the value could be cut and closed: each
    `(position in the span, closers needed there)` just after a complete element, before a comma, or after the first bracket."""
    stack: list[str] = []
    cuts: list[tuple[int, str]] = []
    quotes, end = 0, len(text)
    for i, c in _outside_strings(text, start):
        if c == '"':
            quotes += 1
        elif c in _CLOSE:
            stack.append(_CLOSE[c])
            if i == start:  # an inner container just opened is no complete element: cut before it instead
                cuts.append((i + 1 - start, "".join(reversed(stack))))
        elif c in "}]":
            if not stack or stack[-1] != c:
                end = i  # a stray closer: the value ended before it
                break
            stack.pop()
            if not stack:
                return text[start: i + 1], "", cuts
            cuts.append((i + 1 - start, "".join(reversed(stack))))
        elif c == ",":
            cuts.append((i - start, "".join(reversed(stack))))
    if quotes % 2 == 0 and text[start:end].rstrip().endswith('"'):  # a whole last string: `["a", "b"` keeps "b"
        cuts.append((len(text[start:end].rstrip()), "".join(reversed(stack))))
    return text[start:end], "".join(reversed(stack)), cuts


def repair_truncated(span: str, cuts: list[tuple[int, str]], tries: int = 64) -> Any:
    """The longest prefix of a cut-off value that parses once closed, trying the last `tries` cut points."""
    for position, closers in reversed(cuts[-tries:]):
        attempt = drop_trailing_commas(span[:position].rstrip().rstrip(",") + closers)
        try:
            value = json.loads(attempt)
        except ValueError:
            continue
        return value if has_scalar(value) else _NONE  # `{"facts": [` repaired to `{"facts": []}` says nothing
    return _NONE


def has_scalar(value: Any) -> bool:
    """Whether a JSON value holds at least one number, string, boolean or null (not only empty containers)."""
    if isinstance(value, dict):
        return any(has_scalar(v) for v in value.values())
    if isinstance(value, list):
        return any(has_scalar(v) for v in value)
    return True


def drop_trailing_commas(text: str) -> str:
    """`text` without a comma right before a closing bracket (outside strings)."""
    dropped: list[int] = []
    last = None  # the last character outside strings that is not a space, and where
    for i, c in _outside_strings(text):
        if c.isspace():
            continue
        if c in "}]" and last is not None and last[1] == ",":
            dropped.append(last[0])
        last = (i, c)
    for i in reversed(dropped):
        text = text[:i] + text[i + 1:]
    return text
