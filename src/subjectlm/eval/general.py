"""General ability: what the tuning cost. Both models answer general exams and read general text.

Fine-tuning on one subject costs general ability (Biderman et al. 2024, "LoRA Learns Less and
Forgets Less"); replaying a share of general data keeps the cost down (Ibrahim et al. 2024). The
eval stage measures it with the code that measures the subject: every general exam is answered by
the starting and the tuned model (`run_exam`, the stage's scoring and shots) and compared question
by question (`compare_runs`: exact McNemar, bootstrap interval of the delta); general text gets
both models' perplexity and their ratio (tuned / start; above 1: the tuning made it harder).

    general_data:                       # exam directories, C-Eval / CMMLU / MMLU layout
      - data/general                    # every subject of its split
      - {path: ../ceval-exam, subjects: [high_school_physics, logic], limit: 50}
    general_ppl_data: [data/general_text.txt]

Outputs, under the stage's output_dir: general/<exam name>/{model,base,compare}, general_ppl_model.json,
general_ppl_base.json and retention.json (what the report and its verdict read).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

from subjectlm.config import ConfigError

EXAM_KEYS = ("path", "subjects", "split", "limit")  # what a general_data mapping may say
RETENTION = "retention.json"


@dataclasses.dataclass(frozen=True)
class GeneralExam:
    path: str
    name: str                       # its folder under output_dir/general
    subjects: tuple[str, ...] = ()  # empty: every subject of the split
    split: str | None = None        # None: the stage's split
    limit: int | None = None        # questions per subject (None: all)


def _subjects(value: Any, where: str, source: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: subjects: a list of subject names, e.g. [logic, law]", key=source)
    return tuple(value)


def general_exams(items: list[Any], source: str = "general_data") -> list[GeneralExam]:
    """`general_data` items (a path, or a mapping {path, subjects?, split?, limit?}) as GeneralExams;
    a malformed item is an error naming its index and key. Folder names are the directory names,
    numbered when two are the same."""
    exams: list[GeneralExam] = []
    for i, item in enumerate(items):
        where = f"{source}[{i}]"
        if isinstance(item, dict):
            unknown = sorted(set(item) - set(EXAM_KEYS))
            if unknown:
                raise ConfigError(f"{where}: unknown key {unknown[0]!r}; known: {', '.join(EXAM_KEYS)}", key=source)
            path = item.get("path")
            subjects = _subjects(item["subjects"], where, source) if item.get("subjects") is not None else ()
            split, limit = item.get("split"), item.get("limit")
            if split not in (None, "val", "test", "dev"):
                raise ConfigError(f"{where}: split: one of val, test, dev, got {split!r}", key=source)
            if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
                raise ConfigError(f"{where}: limit: a number of questions per subject (1 or more), got {limit!r}",
                                  key=source)
        else:
            path, subjects, split, limit = item, (), None, None
        if not isinstance(path, (str, Path)) or not str(path):
            raise ConfigError(f"{where}: path: an exam directory (C-Eval, CMMLU or MMLU layout)", key=source)
        taken = {e.name for e in exams}
        stem = Path(str(path)).name or "exam"
        name = next(n for n in [stem, *(f"{stem}_{k}" for k in range(2, len(exams) + 2))] if n not in taken)
        exams.append(GeneralExam(str(path), name, subjects, split, limit))
    return exams


def exam_entry(exam: GeneralExam, folder: Path, compared: dict[str, Any]) -> dict[str, Any]:
    """retention.json's record of one general exam: where its runs are and, per scoring mode, the overall
    paired numbers of its comparison (compare_runs: n, acc_a, acc_b, delta, delta_ci, McNemar p)."""
    return {"name": exam.name, "path": exam.path, "subjects": list(exam.subjects), "dir": str(folder),
            "modes": {mode: r["overall"] for mode, r in compared["modes"].items()}}


def run_general(config: Any, base_model: str, out: Path, exam_config: Callable[..., Any],
                log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Both models on every general exam and general text file; writes retention.json and returns it.
    `exam_config(config, model, out, **overrides)` builds one model's ExamConfig from the stage's."""
    from subjectlm.eval.exam.compare import compare_runs, ppl_ratio
    from subjectlm.eval.exam.runner import run_exam
    from subjectlm.io import write_json

    result: dict[str, Any] = {"exams": [], "ppl": None}
    for exam in general_exams(list(config.general_data)):
        folder = out / "general" / exam.name
        overrides: dict[str, Any] = {"data": exam.path, "subjects": list(exam.subjects), "limit": exam.limit}
        if exam.split:
            overrides["split"] = exam.split
        log(f"general exam {exam.path}: the tuned model")
        run_exam(exam_config(config, config.model, folder / "model", **overrides))
        log(f"general exam {exam.path}: the starting model")
        run_exam(exam_config(config, base_model, folder / "base", **overrides))
        compared = compare_runs(folder / "base", folder / "model", folder / "compare")
        result["exams"].append(exam_entry(exam, folder, compared))
    if config.general_ppl_data:
        from subjectlm.backends.spec import model_options
        from subjectlm.eval.ppl import PPLConfig, run_ppl

        runs = {}
        for which, model in (("model", config.model), ("base", base_model)):
            runs[which] = run_ppl(PPLConfig(**model_options(config.model_spec(model=model), PPLConfig),
                                            data=list(config.general_ppl_data),
                                            output=str(out / f"general_ppl_{which}.json")), log=log)
        files = {f: {"tokens": v["tokens"], "base": runs["base"]["files"].get(f, {}).get("ppl"), "model": v["ppl"],
                     "ratio": ppl_ratio(runs["base"]["files"].get(f, {}).get("ppl"), v["ppl"])}
                 for f, v in runs["model"]["files"].items()}
        base_all, model_all = runs["base"]["overall"]["ppl"], runs["model"]["overall"]["ppl"]
        result["ppl"] = {"files": files, "overall": {"tokens": runs["model"]["overall"]["tokens"], "base": base_all,
                                                     "model": model_all, "ratio": ppl_ratio(base_all, model_all)}}
    write_json(out / RETENTION, result)
    return result


def retention_line(result: dict[str, Any]) -> str:
    """One line for the stage summary: each general exam's deltas per mode, and the perplexity ratio."""
    parts = []
    for exam in result["exams"]:
        modes = ", ".join(f"{mode} {100 * s['acc_a']:.1f}% → {100 * s['acc_b']:.1f}% "
                          f"(Δ {100 * s['delta']:+.1f}, p={s['p_value']:.3g})" for mode, s in exam["modes"].items())
        parts.append(f"general exam {exam['name']} over {next(iter(exam['modes'].values()))['n']} questions: {modes}")
    if result["ppl"]:
        o = result["ppl"]["overall"]
        parts.append(f"general perplexity {o['base']:.2f} → {o['model']:.2f} (×{o['ratio']:.3f})")
    return "; ".join(parts)
