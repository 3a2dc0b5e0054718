"""`subjectlm data check`: what is in the data, and everything wrong with it.

Counts records per file, token-length percentiles with a model's tokenizer (characters when no
model is given), exact duplicates, records over a length limit, and every bad record as
`file:line: field: what is wrong`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Iterable

from subjectlm.data import iter_records
from subjectlm.data.errors import Problem
from subjectlm.data.readers import expand_paths


@dataclasses.dataclass
class CheckReport:
    kind: str
    files: dict[str, int]  # file -> good records
    problems: list[Problem]
    lengths: list[int]
    length_unit: str  # "tokens" or "characters"
    duplicates: list[list[str]]  # groups of sources with identical content
    too_long: list[tuple[str, int]]
    max_length: int | None

    @property
    def records(self) -> int:
        return sum(self.files.values())

    @property
    def ok(self) -> bool:
        return not self.problems

    def percentiles(self) -> dict[str, int]:
        if not self.lengths:
            return {}
        ordered = sorted(self.lengths)

        def at(q: float) -> int:
            return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]

        return {"min": ordered[0], "p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": ordered[-1]}

    def format(self, show: int = 50) -> str:
        lines = [f"kind: {self.kind}"]
        for file, count in self.files.items():
            lines.append(f"  {file}: {count} records")
        lines.append(f"records: {self.records} valid, {len(self.problems)} bad")
        if self.lengths:
            pct = self.percentiles()
            lines.append(f"length ({self.length_unit}): " + "  ".join(f"{k} {v}" for k, v in pct.items()))
        extra = sum(len(g) - 1 for g in self.duplicates)
        lines.append(f"exact duplicates: {extra} record(s) in {len(self.duplicates)} group(s)")
        for group in self.duplicates[:5]:
            lines.append(f"  {' = '.join(group[:4])}{' ...' if len(group) > 4 else ''}")
        if self.max_length is not None:
            lines.append(f"longer than {self.max_length} {self.length_unit}: {len(self.too_long)}")
            for source, n in self.too_long[:5]:
                lines.append(f"  {source}: {n}")
        if self.problems:
            lines.append("bad records:")
            lines += [f"  {p}" for p in self.problems[:show]]
            if len(self.problems) > show:
                lines.append(f"  ... and {len(self.problems) - show} more")
        lines.append("OK" if self.ok else "FAILED: fix the records above (training stages can --skip_invalid them)")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "files": self.files, "records": self.records, "bad": [str(p) for p in self.problems],
                "length_unit": self.length_unit, "length_percentiles": self.percentiles(),
                "duplicates": self.duplicates, "too_long": self.too_long, "ok": self.ok}


def _render(kind: str, value: Any, tokenizer: Any) -> str:
    """The text whose length matters for training: the chat-formatted conversation for sft/dpo."""
    if kind == "pt":
        return value
    if kind == "sft":
        messages = value.messages
    else:
        messages = value.prompt + [{"role": "assistant", "content": max(value.chosen, value.rejected, key=len)}]
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False)
    return "\n".join(m["content"] for m in messages)


def _content_key(kind: str, value: Any) -> str:
    if kind == "pt":
        payload: Any = value
    elif kind == "sft":
        payload = value.messages
    else:
        payload = [value.prompt, value.chosen, value.rejected]
    return hashlib.sha1(json.dumps(payload, ensure_ascii=False, sort_keys=True).encode()).hexdigest()


def check(kind: str, paths: Iterable[str | Path], tokenizer: Any = None, max_length: int | None = None,
          txt_mode: str = "auto") -> CheckReport:
    files = expand_paths(paths)
    counts: dict[str, int] = {str(f): 0 for f in files}
    problems: list[Problem] = []
    lengths: list[int] = []
    too_long: list[tuple[str, int]] = []
    seen: dict[str, list[str]] = defaultdict(list)
    for raw, value, problem in iter_records(kind, files, txt_mode):
        if problem is not None:
            problems.append(problem)
            continue
        counts[raw.file] += 1
        text = _render(kind, value, tokenizer)
        n = len(tokenizer(text, add_special_tokens=False)["input_ids"]) if tokenizer is not None else len(text)
        lengths.append(n)
        if max_length is not None and n > max_length:
            too_long.append((raw.source, n))
        seen[_content_key(kind, value)].append(raw.source)
    duplicates = [group for group in seen.values() if len(group) > 1]
    return CheckReport(kind, counts, problems, lengths, "tokens" if tokenizer is not None else "characters",
                       duplicates, too_long, max_length)
