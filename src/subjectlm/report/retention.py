"""Two report sections on what a gain is worth: what the tuning cost in general ability, and whether
the exam is independent of the training data (overlap check, control questions).

Built, as every section, from the files the eval stage wrote: retention.json and general/*/compare
(eval/general.py), leakage.json (subjectlm.data.overlap) and the exam's compare.json (`control`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from subjectlm.report.collect import Stage, read_json
from subjectlm.report.document import NOT_RUN, Image, Section, Table, Text
from subjectlm.report.sections import Built, num, pct, pval, scoring_modes

FLAGGED_SHOWN = 20  # flagged items listed on the page; leakage.json has them all

RETENTION_HEADER = ["scoring / group", "questions", "start %", "tuned %", "Δ points", "95% CI of Δ",
                    "start-only / tuned-only right", "McNemar p"]


def _ci(s: dict[str, Any]) -> str:
    ci = s.get("delta_ci")
    if not isinstance(ci, list) or len(ci) != 2 or not all(isinstance(x, (int, float)) for x in ci):
        return "–"
    return f"[{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]"


def retention_row(name: str, s: dict[str, Any]) -> list[str]:
    delta = s.get("delta")
    return [name, str(s.get("n", "–")), pct(s.get("acc_a")), pct(s.get("acc_b")),
            "–" if not isinstance(delta, (int, float)) else f"{100 * delta:+.1f}", _ci(s),
            f"{s.get('a_only', '–')} / {s.get('b_only', '–')}", pval(s.get("p_value"))]


def _evals(stages: list[Stage]) -> list[Stage]:
    return [s for s in stages if s.kind == "eval" and s.dir is not None]


def general_section(stages: list[Stage]) -> Built:
    section = Section("General ability: what the tuning cost", "general")
    verdicts: list[str] = []
    for stage in _evals(stages):
        retention = read_json(stage.dir / "retention.json")
        if not isinstance(retention, dict):
            continue
        section.blocks.append(Text(
            "General questions and text the subject training did not aim at, answered by both models. "
            "Paired per question; exact McNemar test; 95% paired-bootstrap interval of the delta; * p < 0.05. "
            "A drop here is what the tuning cost (replaying general data in training keeps it small)."))
        for exam in retention.get("exams") or []:
            folder = Path(str(exam.get("dir", "")))
            compare = scoring_modes(read_json(folder / "compare" / "compare.json"), "overall")
            rows = [retention_row(mode, s) for mode, s in (exam.get("modes") or {}).items()]
            primary = next(iter(compare.values()), {})
            rows += [retention_row(f"  {c}", s) for c, s in (primary.get("categories") or {}).items()
                     if len(primary.get("categories") or {}) > 1]
            subjects = f" (subjects: {', '.join(exam['subjects'])})" if exam.get("subjects") else ""
            section.blocks.append(Table(RETENTION_HEADER, rows, caption=f"{exam.get('name')}: "
                                                                        f"{exam.get('path')}{subjects}"))
            chart = folder / "compare" / "compare.png"
            if chart.is_file():
                section.blocks.append(Image(chart, f"general exam {exam.get('name')}: start vs tuned"))
            for mode, s in (exam.get("modes") or {}).items():
                verdicts.append(f"general exam {exam.get('name')} ({mode}): start {pct(s.get('acc_a'))}% -> tuned "
                                f"{pct(s.get('acc_b'))}% ({retention_row('', s)[4]} points, 95% CI {_ci(s)}, "
                                f"McNemar p={pval(s.get('p_value'))})")
        ppl = retention.get("ppl")
        if isinstance(ppl, dict):
            rows = [[Path(f).name, str(v.get("tokens", "–")), num(v.get("base"), 2), num(v.get("model"), 2),
                     num(v.get("ratio"), 3)] for f, v in (ppl.get("files") or {}).items()]
            o = ppl.get("overall") or {}
            rows.append(["overall", str(o.get("tokens", "–")), num(o.get("base"), 2), num(o.get("model"), 2),
                         num(o.get("ratio"), 3)])
            section.blocks.append(Table(["general text", "tokens", "start", "tuned", "tuned / start"], rows,
                                        caption="perplexity of general text (above 1: the tuning made it harder)"))
            verdicts.append(f"general perplexity: start {num(o.get('base'), 2)} -> tuned {num(o.get('model'), 2)} "
                            f"(x{num(o.get('ratio'), 3)})")
    if not section.blocks:
        section.blocks.append(Text(f"{NOT_RUN}: no eval stage with general_data or general_ppl_data "
                                   "(and a base model to compare with)."))
    return section, verdicts


def _cell(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def independence_section(stages: list[Stage]) -> Built:
    section = Section("Exam independence: overlap with the training data, control questions", "independence")
    verdicts: list[str] = []
    for stage in _evals(stages):
        leakage = read_json(stage.dir / "leakage.json")
        if isinstance(leakage, dict) and isinstance(leakage.get("flagged"), list):
            flagged = [f for f in leakage["flagged"] if isinstance(f, dict)]
            section.blocks.append(Text(
                f"Every evaluation item (exam question with its options, QA question, held-out text in windows) "
                f"checked against the training data for long shared passages and near-duplicates: "
                f"{len(flagged)} flagged (leakage.json)."))
            counts = leakage.get("counts")
            if isinstance(counts, dict):
                section.blocks.append(Table(["count", "value"], [[k, _cell(v)] for k, v in counts.items()]))
            if flagged:
                header = list(dict.fromkeys(k for f in flagged[:FLAGGED_SHOWN] for k in f))
                more = f" (first {FLAGGED_SHOWN} of {len(flagged)})" if len(flagged) > FLAGGED_SHOWN else ""
                section.blocks.append(Table(header, [[_cell(f.get(k, "")) for k in header]
                                                     for f in flagged[:FLAGGED_SHOWN]], caption=f"flagged{more}"))
            verdicts.append(f"leakage: {len(flagged)} evaluation items overlap the training data")
        compare = scoring_modes(read_json(stage.dir / "compare" / "compare.json"), "overall")
        rows = []
        for mode, r in compare.items():
            control = r.get("control") if isinstance(r.get("control"), dict) else {}
            if isinstance(control.get("taught"), dict) and isinstance(control.get("control"), dict):
                rows += [retention_row(f"{mode} taught", control["taught"]),
                         retention_row(f"{mode} control", control["control"])]
        if rows:
            section.blocks.append(Text("Control questions ask about facts the training withheld: a gain on them "
                                       "means the exam can be guessed, not that the model learned."))
            section.blocks.append(Table(RETENTION_HEADER, rows, caption="taught vs control questions"))
    if not section.blocks:
        section.blocks.append(Text(f"{NOT_RUN}: no eval stage with train_data (overlap check) or control questions."))
    return section, verdicts
