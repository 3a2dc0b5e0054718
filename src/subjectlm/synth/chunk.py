"""Documents -> chunks of about `chunk_tokens` tokens that end on sentence boundaries.

A chunk is a slice of its document's text exactly as written (facts are grounded by finding their
quote in it), from one section: Markdown `#` lines start sections and are kept as the chunk's
`headings` (the context a rewrite or a question needs: "Geology > Rock units"), not as its text.
Sentences end at `。！？；` (with any closing quote or bracket after them), at `.!?` followed by
whitespace, and at a blank line. A paragraph that fits in a chunk is not split across two; a sentence
longer than a chunk is a chunk of its own.

Token counts come from a tokenizer when one is given; otherwise from an approximation: one token per
CJK character plus one per four other characters (English averages about four characters a token).
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Callable, Iterator

from subjectlm.synth.documents import Document, language

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
# The end of a sentence: Chinese terminators (and closers after them), Western ones before whitespace,
# or a blank line (a paragraph or list break).
_SENTENCE_END = re.compile(r"[。！？；][”’」』）)\"']*|[.!?][”’\"')\]]*(?=\s|$)|\n[ \t]*\n")
_BLANK_LINE = re.compile(r"\n[ \t]*\n")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\u3000-\u303f\uff00-\uffef]")


@dataclasses.dataclass(frozen=True)
class Chunk:
    id: str  # c00000, c00001, ... in corpus order
    source: str  # the document's file (or file:line)
    headings: tuple[str, ...]
    text: str
    language: str  # en or zh: the language of the prompts about it
    tokens: int


def approximate_tokens(text: str) -> int:
    """One token per CJK character, one per four other non-space characters (rounded up)."""
    cjk = len(_CJK.findall(text))
    other = sum(1 for ch in text if not ch.isspace()) - cjk
    return cjk + math.ceil(other / 4)


def sections(text: str) -> Iterator[tuple[tuple[str, ...], str]]:
    """(headings, body) for each run of text between Markdown headings; headings nest by level."""
    stack: list[tuple[int, str]] = []
    body: list[str] = []

    def flush():
        joined = "\n".join(body).strip()
        body.clear()
        return joined

    for line in text.split("\n"):
        match = _HEADING.match(line)
        if match is None:
            body.append(line)
            continue
        done = flush()
        if done:
            yield tuple(title for _, title in stack), done
        level = len(match.group(1))
        stack = [(lvl, title) for lvl, title in stack if lvl < level] + [(level, match.group(2))]
    done = flush()
    if done:
        yield tuple(title for _, title in stack), done


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence in `text`, whitespace between sentences left out."""
    spans, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        end = match.end()
        if text[start:end].strip():
            spans.append((start, end))
        start = end
    if text[start:].strip():
        spans.append((start, len(text)))
    out = []
    for s, e in spans:
        piece = text[s:e]
        s += len(piece) - len(piece.lstrip())
        e -= len(piece) - len(piece.rstrip())
        if e > s:
            out.append((s, e))
    return out


def paragraphs(text: str) -> list[tuple[int, int]]:
    """(start, end) of each blank-line-separated paragraph of `text`."""
    spans, start = [], 0
    for match in _BLANK_LINE.finditer(text + "\n\n"):
        if text[start:match.start()].strip():
            spans.append((start, min(match.start(), len(text))))
        start = match.end()
    return spans


def chunk_text(body: str, chunk_tokens: int, count: Callable[[str], int]) -> list[str]:
    """Greedy: add sentences while the chunk stays within `chunk_tokens`, and start a new chunk at a
    paragraph that would fit in a chunk of its own but not in what is left of this one (a paragraph is
    split only when it is longer than a chunk). Each chunk is a slice of `body`."""
    chunks: list[str] = []
    first = last = None
    size = 0
    for p_start, p_end in paragraphs(body):
        paragraph_tokens = count(body[p_start:p_end])
        if first is not None and size + paragraph_tokens > chunk_tokens >= paragraph_tokens:
            chunks.append(body[first:last])
            first, size = None, 0
        for start, end in sentence_spans(body[p_start:p_end]):
            start, end = start + p_start, end + p_start
            tokens = count(body[start:end])
            if first is not None and size + tokens > chunk_tokens:
                chunks.append(body[first:last])
                first, size = None, 0
            if first is None:
                first = start
            last, size = end, size + tokens
    if first is not None:
        chunks.append(body[first:last])
    return chunks


def chunk_documents(documents: list[Document], chunk_tokens: int,
                    count: Callable[[str], int] = approximate_tokens) -> list[Chunk]:
    chunks: list[Chunk] = []
    for doc in documents:
        lang = language(doc.text)
        for headings, body in sections(doc.text):
            for text in chunk_text(body, chunk_tokens, count):
                chunks.append(Chunk(f"c{len(chunks):05d}", doc.source, headings, text, lang, count(text)))
    return chunks


def tokenizer_counter(name_or_path: str) -> Callable[[str], int]:
    """A token counter from a local tokenizer (`default`: the embedded default model's)."""
    from subjectlm.models import load_tokenizer, resolve_model

    tokenizer = load_tokenizer(resolve_model(name_or_path))
    return lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])
