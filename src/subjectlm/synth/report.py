"""synth_report.json / .md: what synth made, what it left out and why, and what the teacher cost.

Sections: counts at each step; the grounding rate (facts whose quote is in their chunk, of those that
came with a quote); items left out by reason (teacher failures included, `teacher <step>: <reason>`);
near-duplicates removed per output; exam questions that overlapped the training data (reworded or
dropped); the taught/control split; the exam's letter balance and how often the correct option is the
longest; teacher requests, tokens, seconds and cost. The API key is never part of it: the config is
written with the *name* of the key's environment variable only.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

from subjectlm.config import to_dict
from subjectlm.synth.config import SynthConfig
from subjectlm.synth.exam import LETTERS
from subjectlm.synth.generate import Tally

# Drops that are facts the teacher proposed but the grounding check refused.
_UNGROUNDED = ("fact: no quote", "fact: quote not in chunk")


def _stats(stats: Any) -> dict[str, Any]:
    if hasattr(stats, "to_dict"):
        return stats.to_dict()
    if dataclasses.is_dataclass(stats):
        return dataclasses.asdict(stats)
    if isinstance(stats, dict):
        return dict(stats)
    return dict(vars(stats)) if stats is not None else {}


def _tokens(stats: dict[str, Any], *names: str) -> int:
    return int(next((stats[n] for n in names if isinstance(stats.get(n), (int, float))), 0))


def build(config: SynthConfig, tally: Tally, records: dict[str, list], rows: dict[tuple[str, str], list],
          duplicates: dict[str, dict[str, int]], overlap: dict[str, int], longest_share: float, stats: Any,
          seconds: float) -> dict[str, Any]:
    teacher = _stats(stats)
    tokens_in = _tokens(teacher, "prompt_tokens", "tokens_in")
    tokens_out = _tokens(teacher, "completion_tokens", "tokens_out")
    grounded = tally.counts.get("facts grounded", 0)
    ungrounded = sum(tally.drops.get(k, 0) for k in _UNGROUNDED)
    letters: Counter = Counter(r.letter for part in rows.values() for r in part)
    exam = {f"{category} {split}": len(part) for (category, split), part in rows.items()}
    counts = dict(tally.counts)
    counts.update({"pt records": len(records["pt"]), "sft records": len(records["sft"]),
                   "dpo records": len(records["dpo"]), **{f"exam {k}": v for k, v in exam.items()},
                   "qa questions": sum(exam.values())})
    config_dict = to_dict(config)
    return {
        "counts": counts,
        "grounding_rate": grounded / (grounded + ungrounded) if grounded + ungrounded else None,
        "drops": dict(sorted(tally.drops.items())),
        "near_duplicates_removed": duplicates,
        "exam_overlap": overlap,
        "split": {"taught_chunks": counts.get("taught chunks", 0), "control_chunks": counts.get("control chunks", 0),
                  "taught_questions": sum(v for k, v in exam.items() if k.startswith("taught")),
                  "control_questions": sum(v for k, v in exam.items() if k.startswith("control"))},
        "exam_letters": {letter: letters.get(letter, 0) for letter in LETTERS},
        "correct_option_longest_share": longest_share,
        "teacher": {**teacher, "tokens_in": tokens_in, "tokens_out": tokens_out,
                    "cost": round(tokens_in / 1e6 * config.price_in + tokens_out / 1e6 * config.price_out, 6)},
        "seconds": round(seconds, 2),
        "config": config_dict,
    }


def _table(title: str, mapping: dict[str, Any]) -> list[str]:
    if not mapping:
        return [f"## {title}", "", "none", ""]
    return [f"## {title}", "", "| | |", "|---|---|", *[f"| {k} | {v} |" for k, v in mapping.items()], ""]


def markdown(report: dict[str, Any]) -> str:
    rate = report["grounding_rate"]
    teacher = report["teacher"]
    duplicates = {f"{name} ({where})": n for name, by in report["near_duplicates_removed"].items()
                  for where, n in by.items()}
    lines = ["# synth report", "",
             f"Grounding rate: {'n/a' if rate is None else f'{rate:.3f}'}; correct option is the longest in "
             f"{report['correct_option_longest_share']:.3f} of exam questions (chance: 0.25); "
             f"{report['seconds']:.1f} s.", ""]
    lines += _table("Counts", report["counts"])
    lines += _table("Left out, by reason", report["drops"])
    lines += _table("Near-duplicates removed", duplicates)
    lines += _table("Exam questions overlapping the training data", report["exam_overlap"])
    lines += _table("Taught and control", report["split"])
    lines += _table("Correct letters", report["exam_letters"])
    lines += _table("Teacher", {k: v for k, v in teacher.items() if not isinstance(v, (dict, list))})
    failures = {k: v for k, v in teacher.items() if isinstance(v, dict)}
    for name, values in failures.items():
        lines += _table(f"Teacher {name}", values)
    return "\n".join(lines)


def one_line(report: dict[str, Any]) -> str:
    c = report["counts"]
    s = report["split"]
    return (f"synth: {c.get('chunks after near-duplicates', 0)} chunks ({s['control_chunks']} control), "
            f"{c.get('facts kept', 0)} facts, pt {c['pt records']}, sft {c['sft records']}, dpo {c['dpo records']}, "
            f"exam {s['taught_questions']} taught + {s['control_questions']} control, "
            f"{sum(report['drops'].values())} items left out, teacher tokens {report['teacher']['tokens_in']} in / "
            f"{report['teacher']['tokens_out']} out")
