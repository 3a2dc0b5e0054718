"""Exam results: summary.json, report.md, a per-category bar chart, and the test-split submission.

Accuracies are fractions in [0, 1]. A category's `accuracy` is the mean over its
subjects (how the C-Eval leaderboard averages); `micro` is over its questions.
With `--n_times K`, every number is the mean over the K runs and `*_std` their
population standard deviation.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Sequence

from subjectlm.eval.exams import CATEGORIES, SubjectInfo
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


def summarize(records: list[dict[str, Any]], infos: list[SubjectInfo], meta: dict[str, Any]) -> dict[str, Any]:
    """Per subject, per category, C-Eval Hard and overall accuracies (mean ± std over repeats)."""
    handles = {i.handle for i in infos}
    repeats = sorted({r["repeat"] for r in records if r["repeat"] < meta.get("n_times", 1)})
    by_subject = {i.handle: i for i in infos}
    runs = []  # one dict of numbers per repeat
    for k in repeats:
        counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        answered: dict[str, int] = defaultdict(int)
        for r in records:
            if r["repeat"] == k and r["subject"] in handles:
                answered[r["subject"]] += 1
                if r["correct"] is not None:
                    counts[r["subject"]][0] += int(r["correct"])
                    counts[r["subject"]][1] += 1
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
        **meta,
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


def plot_categories(summary: dict[str, Any], path: Path) -> bool:
    """Bar chart of accuracy per category (+ Hard, Average); False when nothing is graded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [(name, g["accuracy"]) for name, g in summary["categories"].items()]
    if summary.get("hard"):
        groups.append(("Hard", summary["hard"]["accuracy"]))
    groups.append(("Average", summary["macro"]))
    groups = [(n, v) for n, v in groups if v is not None]
    if not groups:
        return False
    fig, ax = plt.subplots(figsize=(1.4 * len(groups) + 2, 3.6))
    bars = ax.bar([n for n, _ in groups], [100 * v for _, v in groups], color="#4C72B0")
    ax.bar_label(bars, fmt="%.1f")
    ax.axhline(25, color="grey", linestyle="--", linewidth=1, label="chance (25%)")
    ax.set_ylim(0, 100)
    ax.set_ylabel("accuracy %")
    ax.set_title(f"{Path(str(summary.get('model'))).name}: {summary.get('format')} {summary.get('split')}, "
                 f"{summary.get('shots')}-shot")
    ax.legend(loc="upper right")
    fig.tight_layout()
    with atomic_file(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=100)
    plt.close(fig)
    return True


def submission(records: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """The official C-Eval submission format {subject: {"id": "A"}}, from the first run."""
    out: dict[str, dict[str, str]] = defaultdict(dict)
    for r in records:
        if r["repeat"] == 0 and r["prediction"] is not None:
            out[r["subject"]][str(r["id"])] = r["prediction"]
    return dict(out)


def write_report(out: Path, summary: dict[str, Any], records: list[dict[str, Any]]) -> None:
    write_json(out / "summary.json", summary)
    write_text(out / "report.md", render_markdown(summary))
    plot_categories(summary, out / "categories.png")
    if summary.get("split") == "test" or any(r.get("answer") is None for r in records):
        write_json(out / "submission.json", submission(records))
