"""Text as the overlap check sees it: normalised, then cut into tokens.

`normalize_text` makes two spellings of the same text equal: Unicode NFKC (full-width letters,
digits and ASCII punctuation become half-width; the ideographic space becomes a space), CJK and
typographic punctuation mapped to its ASCII counterpart (NFKC leaves 。、“” 「」 alone), case folded,
whitespace collapsed to single spaces.

`tokens` then gives words for space-separated text and single characters for Chinese and Japanese
(Han, kana, CJK compatibility ideographs), punctuation dropped: "Mount Harrow，海拔1414米。" ->
["mount", "harrow", "海", "拔", "1414", "米"]. Dropping punctuation means a run of shared tokens is not
broken by a comma written another way.

`sentence_tokens` gives the same tokens and marks the ones a sentence starts or ends at (after ? ! ; :
。, a full stop before a space, a line break, or the text's own ends), so that a short question can be
told apart from the same few words inside a longer sentence.
"""

from __future__ import annotations

import re
import unicodedata

# Punctuation NFKC keeps as is, mapped to what an ASCII writer would type (the full-width forms
# ，．：；！？（）［］ are already half-width after NFKC).
_PUNCTUATION = str.maketrans({
    "。": ".", "｡": ".", "、": ",", "､": ",", "・": " ", "·": " ",
    "“": '"', "”": '"', "„": '"', "‟": '"', "«": '"', "»": '"', "「": '"', "」": '"', "『": '"', "』": '"',
    "‘": "'", "’": "'", "‚": "'", "‛": "'",
    "【": "[", "】": "]", "〔": "(", "〕": ")", "〈": "<", "〉": ">", "《": "<", "》": ">",
    "—": "-", "–": "-", "―": "-", "‐": "-", "‑": "-", "−": "-", "～": "~", "〜": "~", "…": "...",
})

# One token per character for scripts written without spaces: kana (not the middle dot ・, which is
# punctuation), CJK ideographs and their extensions.
_CJK = "\u3041-\u3096\u3099-\u309f\u30a1-\u30fa\u30fc-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f"
_TOKEN = re.compile(f"[{_CJK}]|[^\\W_{_CJK}]+")
_CJK_CHAR = re.compile(f"[{_CJK}]")
_SPACE = re.compile(r"\s+")
# Where one sentence ends and the next starts. No word character, so no token is ever cut by it. A full
# stop counts only before a space, a closing quote or bracket, or the end ("4.5 km" is one sentence).
_SENTENCE_BREAK = re.compile(r"""[?!;:。\n]|\.(?=\s|$|["')\]])""")
SENTENCE_START, SENTENCE_END = 1, 2


def normalize_text(text: str) -> str:
    """Case, width and whitespace removed as differences: `normalize_text("Ｍｔ　Harrow，\\n“1414”")` is
    `'mt harrow, "1414"'`."""
    text = unicodedata.normalize("NFKC", text).translate(_PUNCTUATION).casefold()
    return _SPACE.sub(" ", text).strip()


def tokens(text: str) -> list[str]:
    """The tokens of `text` after `normalize_text`: words, and CJK characters one by one. (The punctuation
    mapping and whitespace collapsing are skipped here: punctuation and spaces only separate tokens.)"""
    return _TOKEN.findall(unicodedata.normalize("NFKC", text).casefold())


def sentence_tokens(text: str) -> tuple[list[str], bytearray]:
    """`tokens(text)`, and for each one SENTENCE_START and/or SENTENCE_END when a sentence starts or ends
    there: `sentence_tokens("Tell me: what is it? No.")` marks "what" (start) and "it" (end)."""
    words: list[str] = []
    marks = bytearray()
    for part in _SENTENCE_BREAK.split(unicodedata.normalize("NFKC", text).casefold()):
        found = _TOKEN.findall(part)
        if found:
            marks.extend(bytes(len(found)))
            marks[len(words)] |= SENTENCE_START
            marks[-1] |= SENTENCE_END
            words.extend(found)
    return words, marks


def is_cjk(token: str) -> bool:
    return _CJK_CHAR.fullmatch(token) is not None


def join_tokens(words: list[str]) -> str:
    """Tokens back to readable text: CJK characters side by side, words with a space."""
    out: list[str] = []
    for i, token in enumerate(words):
        if i and not (is_cjk(token) and is_cjk(words[i - 1])):
            out.append(" ")
        out.append(token)
    return "".join(out)
