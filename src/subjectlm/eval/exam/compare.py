"""`subjectlm eval compare RUN_A RUN_B`: did fine-tuning teach the subject without costing the others?

Both runs' predictions are paired by (subject, question id); only questions graded
in both count. For each subject, category and overall: accuracy of A and B, the
delta B − A, and the exact McNemar test: of the n discordant questions (right in
one run, wrong in the other), b went A-right/B-wrong and c the reverse; under "no
difference" b ~ Binomial(n, 1/2), and the two-sided p-value is
min(1, 2 · P(X ≤ min(b, c))). Computed with integers, exactly.

Every group also carries `delta_ci`: the 95% paired-bootstrap interval of the
delta (questions resampled with replacement, 2000 rounds, seed 0), so a retention
check can say how large a drop could be, not only whether it is significant.

Runs scored in several modes (`--scoring both`) are compared in every mode both
carry, each with its own McNemar test: `result["modes"][mode]`. The top level is
the primary mode's (letter when both runs have it), as before scoring modes.

Categories are C-Eval's four, then any other a subject_mapping.json names. An exam
with a `control` category (questions on facts the training withheld, as `subjectlm
synth` writes them) also gets `control`: {"taught": ..., "control": ...}: a gain on
the control questions means the exam can be guessed, not that the model learned.

Two `eval ppl --output` files compare as perplexity ratios (B / A), per file and
overall: `compare_ppl_files`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from subjectlm.errors import UserError
from subjectlm.eval.exam.cloze import LETTER, primary_mode
from subjectlm.eval.exam.directory import CATEGORIES
from subjectlm.io import atomic_file, write_json, write_text
from subjectlm.scoring.stats import exact_binomial_p, paired_bootstrap_ci

CONTROL = "control"  # the category of questions on facts the training never saw (subjectlm synth)


class CompareError(UserError, ValueError):
    pass


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for b and c discordant pairs."""
    return exact_binomial_p(b, c)


def run_modes(summary: dict[str, Any]) -> list[str]:
    """The scoring modes a run's summary carries (a summary from before modes existed: letter)."""
    return list(summary.get("scoring_modes") or [LETTER])


def load_run(run_dir: str | Path, mode: str | None = None) -> tuple[dict[str, Any], dict[tuple[str, str], bool]]:
    """A run's summary and its first repeat's graded answers {(subject, id): correct} under `mode`
    (default: the run's primary mode)."""
    from subjectlm.eval.exam.runner import PREDICTIONS, read_predictions

    run_dir = Path(run_dir)
    summary_path = run_dir / "summary.json"
    if not summary_path.is_file():
        raise CompareError(f"{run_dir}: no summary.json: not a finished `subjectlm eval exam` output")
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    mode = mode or primary_mode(run_modes(summary))
    graded = {}
    for r in read_predictions(run_dir / PREDICTIONS):
        result = r.mode(mode) if r.repeat == 0 else None
        if result is not None and result["correct"] is not None:
            graded[r.key] = bool(result["correct"])
    return summary, graded


def paired_stats(pairs: list[tuple[bool, bool]]) -> dict[str, Any]:
    n = len(pairs)
    a = sum(x for x, _ in pairs)
    b_ = sum(y for _, y in pairs)
    only_a = sum(1 for x, y in pairs if x and not y)
    only_b = sum(1 for x, y in pairs if y and not x)
    boot = paired_bootstrap_ci([float(x) for x, _ in pairs], [float(y) for _, y in pairs])
    return {"n": n, "acc_a": a / n if n else None, "acc_b": b_ / n if n else None,
            "delta": (b_ - a) / n if n else None, "delta_ci": boot["ci"], "a_only": only_a, "b_only": only_b,
            "p_value": mcnemar_exact(only_a, only_b)}


def compare(summary_a: dict, graded_a: dict, summary_b: dict, graded_b: dict) -> dict[str, Any]:
    common = sorted(set(graded_a) & set(graded_b))
    if not common:
        raise CompareError("the two runs have no graded question in common (different exams or splits?)")
    category = {h: s["category"] for h, s in {**summary_a["subjects"], **summary_b["subjects"]}.items()}

    def stats(keys):
        return paired_stats([(graded_a[k], graded_b[k]) for k in keys])

    subjects = sorted({s for s, _ in common})
    present = {category.get(s) for s in subjects}
    names = [c for c in CATEGORIES if c in present] + sorted(c for c in present if c and c not in CATEGORIES)
    result = {
        "run_a": summary_a.get("model"), "run_b": summary_b.get("model"),
        "test": "exact McNemar (two-sided binomial on discordant pairs)",
        "subjects": {s: stats([k for k in common if k[0] == s]) for s in subjects},
        "categories": {c: stats([k for k in common if category.get(k[0]) == c]) for c in names},
        "overall": stats(common),
    }
    if CONTROL in present and len(present) > 1:
        result["control"] = {"taught": stats([k for k in common if category.get(k[0]) != CONTROL]),
                             CONTROL: result["categories"][CONTROL]}
    return result


def compare_modes(run_a: str | Path, run_b: str | Path) -> dict[str, Any]:
    """`compare` in every scoring mode both runs carry; the top level is the primary mode's."""
    summary_a, summary_b = load_run(run_a)[0], load_run(run_b)[0]
    modes = [m for m in run_modes(summary_b) if m in run_modes(summary_a)]
    if not modes:
        raise CompareError(f"{run_a} ({', '.join(run_modes(summary_a))}) and {run_b} "
                           f"({', '.join(run_modes(summary_b))}) share no scoring mode")
    per_mode = {}
    for mode in modes:
        _, graded_a = load_run(run_a, mode)
        _, graded_b = load_run(run_b, mode)
        per_mode[mode] = compare(summary_a, graded_a, summary_b, graded_b)
    primary = primary_mode(modes)
    keys = ("subjects", "categories", "overall", "control")
    return {**per_mode[primary], "primary_mode": primary,
            "modes": {m: {k: r[k] for k in keys if k in r} for m, r in per_mode.items()}}


def _row(name: str, s: dict[str, Any]) -> str:
    flag = " *" if s["p_value"] < 0.05 else ""
    return (f"| {name} | {s['n']} | {100 * s['acc_a']:.2f} | {100 * s['acc_b']:.2f} | {100 * s['delta']:+.2f} "
            f"| {s['a_only']} / {s['b_only']} | {s['p_value']:.4f}{flag} |")


def render_markdown(result: dict[str, Any], name_a: str = "A", name_b: str = "B") -> str:
    head = ["| group | questions | A % | B % | Δ (B−A) | A-only / B-only right | p |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    lines = [f"# Comparison: A = {result['run_a']} ({name_a}), B = {result['run_b']} ({name_b})", "",
             f"Paired over questions graded in both runs; test: {result['test']}; * p < 0.05.", "", *head,
             _row("**overall**", result["overall"])]
    lines += [_row(c, s) for c, s in result["categories"].items()]
    lines += ["", *head] + [_row(s, v) for s, v in result["subjects"].items()]
    modes = result.get("modes") or {}
    if len(modes) > 1:
        lines += ["", f"## Every scoring mode (the tables above: {result['primary_mode']})", "",
                  "| mode | group | questions | A % | B % | Δ (B−A) | A-only / B-only right | p |",
                  "|---|---|---:|---:|---:|---:|---:|---:|"]
        for mode, r in modes.items():
            lines.append("| " + mode + " " + _row("**overall**", r["overall"]))
            lines += ["| " + mode + " " + _row(c, s) for c, s in r["categories"].items()]
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path, label_a: str = "A", label_b: str = "B") -> None:
    """Accuracy of both runs per group; the legend names each run (the last part of its path)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(result["categories"].items()) + [("Overall", result["overall"])]
    # Other scoring modes: their overall pair each (the categories above are the primary mode's).
    groups += [(mode.replace("cloze_", "cloze\n"), r["overall"]) for mode, r in (result.get("modes") or {}).items()
               if mode != result.get("primary_mode")]
    xs = range(len(groups))
    fig, ax = plt.subplots(figsize=(1.6 * len(groups) + 2, 3.6))
    ax.bar([x - 0.2 for x in xs], [100 * g["acc_a"] for _, g in groups], 0.4, label=f"A: {label_a}", color="#999999")
    ax.bar([x + 0.2 for x in xs], [100 * g["acc_b"] for _, g in groups], 0.4, label=f"B: {label_b}", color="#4C72B0")
    for x, (_, g) in zip(xs, groups):
        top = 100 * max(g["acc_a"], g["acc_b"])
        ax.annotate(f"{100 * g['delta']:+.1f}{'*' if g['p_value'] < 0.05 else ''}", (x, top + 2), ha="center")
    ax.set_xticks(list(xs), [n for n, _ in groups])
    ax.set_ylim(0, 100)
    ax.set_ylabel("accuracy %")
    primary = result.get("primary_mode", "letter")
    ax.set_title(f"B vs A (Δ in points, * p < 0.05, exact McNemar; groups: {primary}, then other modes' overall)"
                 if len(result.get("modes") or {}) > 1 else "B vs A (Δ in points, * p < 0.05, exact McNemar)")
    ax.legend()
    fig.tight_layout()
    with atomic_file(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=100)
    plt.close(fig)


def compare_runs(run_a: str | Path, run_b: str | Path, output_dir: str | Path | None = None) -> dict[str, Any]:
    """Compare two exam outputs; write compare.json/.md/.png into output_dir (default: RUN_B/compare)."""
    result = compare_modes(run_a, run_b)
    out = Path(output_dir) if output_dir else Path(run_b) / "compare"
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "compare.json", result)
    write_text(out / "compare.md", render_markdown(result, str(run_a), str(run_b)))
    plot(result, out / "compare.png", Path(run_a).name, Path(run_b).name)
    result["output_dir"] = str(out)
    return result


def ppl_ratio(start: Any, tuned: Any) -> float | None:
    """tuned / start perplexity (above 1: the tuned model finds the text harder), None when either is missing."""
    ok = all(isinstance(x, (int, float)) and x > 0 for x in (start, tuned))
    return tuned / start if ok else None


def compare_ppl(result_a: dict[str, Any], result_b: dict[str, Any]) -> dict[str, Any]:
    """Two `eval ppl` results on the same files: each file's and the overall perplexity of A and B, and B / A."""
    files_a, files_b = result_a.get("files", {}), result_b.get("files", {})
    common = [f for f in files_b if f in files_a]
    if not common:
        raise CompareError("the two perplexity results share no text file")
    files = {f: {"tokens": files_b[f]["tokens"], "ppl_a": files_a[f]["ppl"], "ppl_b": files_b[f]["ppl"],
                 "ratio": ppl_ratio(files_a[f]["ppl"], files_b[f]["ppl"])} for f in common}
    overall_a, overall_b = result_a.get("overall", {}).get("ppl"), result_b.get("overall", {}).get("ppl")
    return {"run_a": result_a.get("model"), "run_b": result_b.get("model"), "files": files,
            "overall": {"tokens": result_b.get("overall", {}).get("tokens"), "ppl_a": overall_a, "ppl_b": overall_b,
                        "ratio": ppl_ratio(overall_a, overall_b)}}


def render_ppl_markdown(result: dict[str, Any]) -> str:
    lines = [f"# Perplexity: A = {result['run_a']}, B = {result['run_b']}", "",
             "| file | tokens | A | B | B / A |", "|---|---:|---:|---:|---:|"]
    for name, f in [*result["files"].items(), ("**overall**", result["overall"])]:
        ratio = "n/a" if f["ratio"] is None else f"{f['ratio']:.3f}"
        lines.append(f"| {name} | {f['tokens']} | {f['ppl_a']:.3f} | {f['ppl_b']:.3f} | {ratio} |")
    return "\n".join(lines) + "\n"


def compare_ppl_files(path_a: str | Path, path_b: str | Path, output_dir: str | Path | None = None) -> dict[str, Any]:
    """Compare two `eval ppl --output` files; write ppl_compare.json/.md into output_dir (default: beside B)."""
    loaded = []
    for path in (Path(path_a), Path(path_b)):
        try:
            loaded.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            raise CompareError(f"{path}: not a readable `subjectlm eval ppl --output` file ({exc})") from None
        if not isinstance(loaded[-1], dict) or "files" not in loaded[-1]:
            raise CompareError(f"{path}: no `files`: not a `subjectlm eval ppl --output` file")
    result = compare_ppl(*loaded)
    out = Path(output_dir) if output_dir else Path(path_b).parent
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "ppl_compare.json", result)
    write_text(out / "ppl_compare.md", render_ppl_markdown(result))
    result["output_dir"] = str(out)
    return result
