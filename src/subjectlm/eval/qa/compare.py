"""Before/after comparison of two `eval qa` runs, question by question.

Predictions are paired by question id; a score counts only on the questions where both runs
have it (key-fact recall only where there are key facts). For each score: both means, the mean
difference B − A with its paired bootstrap interval, and the exact sign test (scoring/stats.py).
Writes compare.json, compare.md and compare.png (reference log-likelihood, A against B, per
question) into the output folder, each atomically.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from subjectlm.errors import UserError
from subjectlm.eval.qa.runner import PREDICTIONS, SCORES, read_predictions
from subjectlm.io import atomic_file, write_json, write_text
from subjectlm.scoring.stats import paired_comparison


class QACompareError(UserError, ValueError):
    pass


def is_qa_run(run_dir: str | Path) -> bool:
    """Whether a folder holds a finished `eval qa` run (its summary has QA scores, not exam subjects)."""
    path = Path(run_dir) / "summary.json"
    if not path.is_file():
        return False
    summary = json.loads(path.read_text(encoding="utf-8"))
    return "scores" in summary and "subjects" not in summary


def load_qa_run(run_dir: str | Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    run_dir = Path(run_dir)
    summary_path = run_dir / "summary.json"
    if not summary_path.is_file():
        raise QACompareError(f"{run_dir}: no summary.json: not a finished `subjectlm eval qa` output")
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    return summary, {str(r["id"]): r for r in read_predictions(run_dir / PREDICTIONS)}


def compare_records(a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]], n_bootstrap: int = 2000,
                    ci: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """Per score: paired_comparison over the questions both runs scored."""
    common = sorted(set(a) & set(b))
    if not common:
        raise QACompareError("the two runs have no question in common (different QA files?)")
    scores = {}
    for score in SCORES:
        ids = [i for i in common if a[i].get(score) is not None and b[i].get(score) is not None]
        if ids:
            scores[score] = paired_comparison([a[i][score] for i in ids], [b[i][score] for i in ids],
                                              n_bootstrap, ci, seed)
    return {"n_common": len(common), "ci": ci, "n_bootstrap": n_bootstrap, "seed": seed, "scores": scores}


def render_markdown(result: dict[str, Any]) -> str:
    pct = f"{result['ci']:.0%}"
    lines = [f"# Closed-book QA: {result['run_b']} vs {result['run_a']}", "",
             f"{result['n_common']} questions answered by both. Δ = B − A (B: {result['run_b']}); "
             f"{pct} paired bootstrap interval ({result['n_bootstrap']} rounds); exact two-sided sign test.", "",
             f"| score | n | A | B | Δ | {pct} CI | up / down / same | sign test p |",
             "|---|---:|---:|---:|---:|---|---|---:|"]
    for score, s in result["scores"].items():
        lines.append(f"| {score} | {s['n']} | {s['mean_before']:.3f} | {s['mean_after']:.3f} | {s['mean_diff']:+.3f} | "
                     f"[{s['ci'][0]:+.3f}, {s['ci'][1]:+.3f}] | {s['up']} / {s['down']} / {s['ties']} | "
                     f"{s['p_value']:.3g} |")
    return "\n".join(lines) + "\n"


def plot_reference_logprobs(records_a: dict[str, dict[str, Any]], records_b: dict[str, dict[str, Any]],
                            label_a: str, label_b: str, path: Path) -> None:
    """One point per question: the reference's mean log-likelihood under A (x) and B (y); above the
    diagonal, B finds the reference more likely."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    common = sorted(set(records_a) & set(records_b))
    x = [records_a[i]["ref_logprob"] for i in common]
    y = [records_b[i]["ref_logprob"] for i in common]
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(x, y, s=18, alpha=0.7)
    low, high = min(x + y), max(x + y)
    ax.plot([low, high], [low, high], color="grey", linewidth=1, linestyle="--")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel(f"A: {Path(label_a).name}")  # model paths are long; their last part names them
    ax.set_ylabel(f"B: {Path(label_b).name}")
    ax.set_title("Reference log-likelihood per token, per question")
    fig.tight_layout()
    with atomic_file(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=100)
    plt.close(fig)


def compare_qa_runs(run_a: str | Path, run_b: str | Path, output_dir: str | Path | None = None,
                    n_bootstrap: int = 2000, seed: int = 0, ci: float = 0.95) -> dict[str, Any]:
    """Compare run B (e.g. the tuned model) with run A (e.g. the base); write compare.json/.md."""
    summary_a, records_a = load_qa_run(run_a)
    summary_b, records_b = load_qa_run(run_b)
    result = {"run_a": summary_a.get("model"), "run_b": summary_b.get("model"),
              **compare_records(records_a, records_b, n_bootstrap, ci, seed)}
    out = Path(output_dir) if output_dir is not None else Path(run_b) / "compare"
    write_json(out / "compare.json", result)
    write_text(out / "compare.md", render_markdown(result) + "\n![reference log-likelihood](compare.png)\n")
    plot_reference_logprobs(records_a, records_b, str(result["run_a"]), str(result["run_b"]), out / "compare.png")
    result["output_dir"] = str(out)
    return result
