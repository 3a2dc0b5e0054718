"""The answer letter in a chain-of-thought completion.

Patterns are tried from the most explicit ("答案是C", "the answer is (C)") to the
weakest (the only letter mentioned). No match gives None, counted as wrong: the
official scripts draw a random letter instead, which makes reruns differ.
"""

from __future__ import annotations

import re

_EXPLICIT = [
    r"答案(?:选项)?(?:应该)?(?:是|为)[：:\s]*[（(]?([ABCD])",
    r"所以答案是\s*([ABCD])",
    r"(?:正确|最佳)(?:的)?(?:选项|答案)(?:是|为)?[：:\s]*([ABCD])",
    r"(?:故|因此|所以)(?:选|选择)\s*([ABCD])",
    r"[Tt]he (?:correct )?answer is:?\s*\(?([ABCD])\)?",
    r"选项\s*([ABCD])\s*(?:是|为)?正确",
    r"答案[：:]\s*([ABCD])",
]


def extract_choice(text: str, letters: str = "ABCD") -> str | None:
    text = text.strip()
    if text[:1] in letters and (len(text) == 1 or not text[1].isalpha()):
        return text[0]
    for pattern in _EXPLICIT:
        found = re.findall(pattern, text)
        if found:
            return found[-1]  # the conclusion comes last
    mentioned = set(re.findall(r"(?<![A-Za-z])([ABCD])(?![A-Za-z])", text))
    if len(mentioned) == 1:
        return mentioned.pop()
    return None
