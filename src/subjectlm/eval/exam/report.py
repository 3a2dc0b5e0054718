"""Exam results: summary.json, report.md, a per-category bar chart, and the test-split submission.

Accuracies are fractions in [0, 1]. A category's `accuracy` is the mean over its
subjects (how the C-Eval leaderboard averages); `micro` is over its questions.
With `--n_times K`, every number is the mean over the K runs and `*_std` their
population standard deviation.

Scoring modes (`--scoring both`: letter and the four cloze metrics, see cloze.py) are
summarised side by side: `summary["modes"][mode]` holds each mode's numbers in the same
shape as the top level, and the top level is the primary mode's (letter when scored),
so readers of a letter-only summary see what they always saw.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Sequence

from subjectlm.eval.exam.cloze import LETTER, primary_mode
from subjectlm.eval.exam.directory import CATEGORIES, SubjectInfo
from subjectlm.eval.exam.prediction import Prediction
from subjectlm.io import atomic_file, write_json, write_text


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _std(values: Sequence[float]) -> float:
    return statistics.pstdev(values) if len(values) > 1 else 0.0


def _group(per_subject: dict[str, float], counts: dict[str, tuple[int, int]], members: Iterable[str]) -> dict[str, Any]:
    members = [s for s in members if s in per_subject]
    correct = sum(counts[s][0] for s in members)
    count = sum(counts[s][1] for s in members)
    return {"subjects": len(members), "count": count,
            "accuracy": _mean([per_subject[s] for s in members]),
            "micro": correct / count if count else None}


def summarize(records: list[Prediction], infos: list[SubjectInfo], meta: dict[str, Any]) -> dict[str, Any]:
    """The primary mode's numbers at the top level, every scoring mode's under `modes`."""
    modes = meta.get("scoring_modes") or [LETTER]
    per_mode = {m: summarize_mode(records, infos, meta, m) for m in modes}
    return {**meta, **per_mode[primary_mode(modes)], "primary_mode": primary_mode(modes),
            "modes": {m: {k: v for k, v in numbers.items() if k != "runs"} for m, numbers in per_mode.items()}}


def summarize_mode(records: list[Prediction], infos: list[SubjectInfo], meta: dict[str, Any],
                   mode: str = LETTER) -> dict[str, Any]:
    """Per subject, per category, C-Eval Hard and overall accuracies (mean ± std over repeats) under one mode."""
    handles = {i.handle for i in infos}
    repeats = sorted({r.repeat for r in records if r.repeat < meta.get("n_times", 1)})
    runs = []  # one dict of numbers per repeat
    for k in repeats:
        counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        answered: dict[str, int] = defaultdict(int)
        for r in records:
            if r.repeat == k and r.subject in handles:
                answered[r.subject] += 1
                result = r.mode(mode)
                if result is not None and result["correct"] is not None:
                    counts[r.subject][0] += int(result["correct"])
                    counts[r.subject][1] += 1
        per_subject = {s: c / n for s, (c, n) in counts.items() if n}
        tallies = {s: tuple(v) for s, v in counts.items()}
        run = {"subjects": per_subject, "counts": tallies, "answered": dict(answered),
               "categories": {cat: _group(per_subject, tallies, [i.handle for i in infos if i.category == cat])
                              for cat in CATEGORIES},
               "hard": _group(per_subject, tallies, [i.handle for i in infos if i.hard]),
               "overall": _group(per_subject, tallies, handles)}
        runs.append(run)

    def across(get) -> tuple[float | None, float]:
        values = [v for v in (get(run) for run in runs) if v is not None]
        return (_mean(values), _std(values)) if values else (None, 0.0)

    subjects = {}
    for info in infos:
        acc, std = across(lambda run, h=info.handle: run["subjects"].get(h))
        first = runs[0] if runs else {"counts": {}, "answered": {}}
        correct, count = first["counts"].get(info.handle, (0, 0))
        subjects[info.handle] = {"name": info.name, "category": info.category, "hard": info.hard,
                                 "answered": first["answered"].get(info.handle, 0), "count": count,
                                 "correct": correct, "accuracy": acc, "accuracy_std": std}

    def group_summary(get) -> dict[str, Any]:
        acc, std = across(lambda run: get(run)["accuracy"])
        micro, micro_std = across(lambda run: get(run)["micro"])
        base = get(runs[0]) if runs else {"subjects": 0, "count": 0}
        return {"subjects": base["subjects"], "count": base["count"], "accuracy": acc, "accuracy_std": std,
                "micro": micro, "micro_std": micro_std}

    overall = group_summary(lambda run: run["overall"])
    return {
        "repeats": len(runs),
        "subjects": subjects,
        "categories": {cat: group_summary(lambda run, c=cat: run["categories"][c]) for cat in CATEGORIES
                       if any(i.category == cat for i in infos)},
        "hard": group_summary(lambda run: run["hard"]) if any(i.hard for i in infos) else None,
        "macro": overall["accuracy"], "macro_std": overall["accuracy_std"],
        "micro": overall["micro"], "micro_std": overall["micro_std"],
        "count": overall["count"],
        "runs": [{"macro": r["overall"]["accuracy"], "micro": r["overall"]["micro"]} for r in runs],
    }


def _pct(value: float | None, std: float = 0.0, show_std: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{100 * value:.2f}" + (f" ± {100 * std:.2f}" if show_std else "")


def render_markdown(summary: dict[str, Any]) -> str:
    if list(summary.get("modes") or [LETTER]) != [LETTER]:
        return render_modes_markdown(summary)
    k = summary.get("repeats", 1)
    many = k > 1
    lines = [f"# Exam report: {summary.get('model')}", "",
             f"- data: `{summary.get('data')}` ({summary.get('format')}, split {summary.get('split')}), "
             f"{summary.get('shots')}-shot, with_prompt={summary.get('with_prompt')}, cot={summary.get('cot')}",
             f"- accuracy (%, mean over subjects): **{_pct(summary['macro'], summary['macro_std'], many)}**; "
             f"over questions: {_pct(summary['micro'], summary['micro_std'], many)} "
             f"({summary['count']} graded questions{f', {k} runs: mean ± std' if many else ''})", "",
             "| group | subjects | questions | accuracy % | micro % |", "|---|---:|---:|---:|---:|"]
    groups = list(summary["categories"].items())
    if summary.get("hard"):
        groups.append(("C-Eval Hard", summary["hard"]))
    for name, g in groups:
        lines.append(f"| {name} | {g['subjects']} | {g['count']} | {_pct(g['accuracy'], g['accuracy_std'], many)} "
                     f"| {_pct(g['micro'], g['micro_std'], many)} |")
    lines += ["", "| subject | name | category | questions | accuracy % |", "|---|---|---|---:|---:|"]
    for handle, s in sorted(summary["subjects"].items()):
        lines.append(f"| {handle} | {s['name']} | {s['category']} | {s['answered']} | "
                     f"{_pct(s['accuracy'], s['accuracy_std'], many)} |")
    return "\n".join(lines) + "\n"


def _mode_label(mode: str) -> str:
    return mode.replace("cloze_", "cloze ")  # cloze_acc_norm -> "cloze acc_norm": lm-eval's metric names


def render_modes_markdown(summary: dict[str, Any]) -> str:
    """Every scoring mode side by side: one accuracy column per mode (mean over subjects; ± std over repeats)."""
    modes = summary["modes"]
    k = summary.get("repeats", 1)
    many = k > 1
    names = list(modes)
    head = " | ".join(f"{_mode_label(m)} %" for m in names)
    rule = "|".join("---:" for _ in names)
    lines = [f"# Exam report: {summary.get('model')}", "",
             f"- data: `{summary.get('data')}` ({summary.get('format')}, split {summary.get('split')}), "
             f"{summary.get('shots')}-shot, with_prompt={summary.get('with_prompt')}, cot={summary.get('cot')}",
             f"- scoring: {summary.get('scoring')}; letter = the official next-token letter; cloze = each option's "
             "text scored as the continuation of the question (acc: summed log-prob, acc_norm: per character, "
             "acc_bytes: per UTF-8 byte, acc_pmi: minus its log-prob after the bare answer cue)",
             f"- headline ({_mode_label(summary['primary_mode'])}, %, mean over subjects): "
             f"**{_pct(summary['macro'], summary['macro_std'], many)}** "
             f"({summary['count']} graded questions{f', {k} runs: mean ± std' if many else ''})", "",
             f"| group | subjects | questions | {head} |", f"|---|---:|---:|{rule}|"]

    def row(name: str, get) -> str:
        first = get(modes[names[0]])
        cells = " | ".join(_pct(get(modes[m])["accuracy"], get(modes[m])["accuracy_std"], many) for m in names)
        return f"| {name} | {first['subjects']} | {first['count']} | {cells} |"

    lines.append(row("**overall**", lambda m: {"subjects": len(m["subjects"]), "count": m["count"],
                                               "accuracy": m["macro"], "accuracy_std": m["macro_std"]}))
    lines.append(row("overall, over questions", lambda m: {"subjects": len(m["subjects"]), "count": m["count"],
                                                           "accuracy": m["micro"], "accuracy_std": m["micro_std"]}))
    for cat in summary["categories"]:
        lines.append(row(cat, lambda m, c=cat: m["categories"][c]))
    if summary.get("hard"):
        lines.append(row("C-Eval Hard", lambda m: m["hard"]))
    lines += ["", f"| subject | name | category | questions | {head} |", f"|---|---|---|---:|{rule}|"]
    for handle, s in sorted(summary["subjects"].items()):
        cells = " | ".join(_pct(modes[m]["subjects"][handle]["accuracy"], modes[m]["subjects"][handle]["accuracy_std"],
                                many) for m in names)
        lines.append(f"| {handle} | {s['name']} | {s['category']} | {s['answered']} | {cells} |")
    return "\n".join(lines) + "\n"


def plot_categories(summary: dict[str, Any], path: Path) -> bool:
    """Bar chart of accuracy per category (+ Hard, Average), one bar per scoring mode; False when nothing is graded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = summary.get("modes") or {LETTER: summary}

    def groups_of(numbers: dict[str, Any]) -> list[tuple[str, float | None]]:
        groups = [(name, g["accuracy"]) for name, g in numbers["categories"].items()]
        if numbers.get("hard"):
            groups.append(("Hard", numbers["hard"]["accuracy"]))
        return groups + [("Average", numbers["macro"])]

    names = [n for n, v in groups_of(summary) if v is not None]
    if not names:
        return False
    width = 0.8 / len(modes)
    fig, ax = plt.subplots(figsize=(max(1.4, 0.9 * len(modes)) * len(names) + 2, 3.6))
    for i, (mode, numbers) in enumerate(modes.items()):
        values = dict(groups_of(numbers))
        xs = [j + (i - (len(modes) - 1) / 2) * width for j in range(len(names))]
        bars = ax.bar(xs, [100 * (values[n] or 0) for n in names], width, label=_mode_label(mode))
        ax.bar_label(bars, fmt="%.1f", fontsize=8 if len(modes) > 1 else 10)
    ax.set_xticks(range(len(names)), names)
    ax.axhline(25, color="grey", linestyle="--", linewidth=1, label="chance (25%)")
    ax.set_ylim(0, 100)
    ax.set_ylabel("accuracy %")
    ax.set_title(f"{Path(str(summary.get('model'))).name}: {summary.get('format')} {summary.get('split')}, "
                 f"{summary.get('shots')}-shot")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    with atomic_file(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=100)
    plt.close(fig)
    return True


def submission(records: list[Prediction]) -> dict[str, dict[str, str]]:
    """The official C-Eval submission format {subject: {"id": "A"}}, from the first run."""
    out: dict[str, dict[str, str]] = defaultdict(dict)
    for r in records:
        if r.repeat == 0 and r.prediction is not None:
            out[r.subject][str(r.id)] = r.prediction
    return dict(out)


def write_report(out: Path, summary: dict[str, Any], records: list[Prediction]) -> None:
    write_json(out / "summary.json", summary)
    write_text(out / "report.md", render_markdown(summary))
    plot_categories(summary, out / "categories.png")
    if summary.get("split") == "test" or any(r.answer is None for r in records):
        write_json(out / "submission.json", submission(records))
