"""The recipe's eval stage: examine the model and, when given, the base model it started from; compare.

    - stage: eval
      data: data/exam          # exam directory (C-Eval layout); every `eval exam` key works here
      subjects: [logic]        # optional
      ppl_data: [data/heldout.txt]   # optional: held-out perplexity of both models
      qa_data: data/qa.jsonl   # optional: closed-book QA of both models, compared
      general_data: [data/general, {path: ceval-exam, subjects: [logic]}]  # optional: what the tuning cost
      general_ppl_data: [data/general_text.txt]                             # (eval/general.py)
      verdict: {alpha: 0.01}   # optional: the report's verdict thresholds (eval/verdict_thresholds.py)

The stage's config is `eval exam`'s own (ExamConfig: same keys, help and validation), with
`scoring` defaulting to `both` (the official letter and the cloze modes side by side) and a few
keys of its own. The pipeline fills in `model` (the latest model) and `base_model` (the recipe's
starting model), and `train_data` (every file the recipe's training stages read so far), against
which every evaluation file is checked for overlap (subjectlm.data.overlap): leakage.json.
Outputs: output_dir/model, output_dir/base, output_dir/compare (exam), output_dir/ppl_*.json,
output_dir/qa (QA runs and compare.md), output_dir/general and retention.json (general ability),
output_dir/leakage.json.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from subjectlm.backends.spec import model_options
from subjectlm.config import DATA_FILES, MODEL, OUTPUT, TEXT_DATA, check_options, config_from, option
from subjectlm.eval.exam.runner import ExamConfig
from subjectlm.eval.general import general_exams
from subjectlm.eval.verdict_thresholds import thresholds_from

if TYPE_CHECKING:
    from subjectlm.eval.exam.scoring import Scorer

LEAKAGE = "leakage.json"


@dataclasses.dataclass(kw_only=True)
class EvalStageConfig(ExamConfig):
    scoring: str = option("both", help="letter, cloze or both (the stage scores both ways by default: a small "
                                       "model's letter answers are noise, its answer-text log-likelihoods are not)")
    output_dir: str = option("runs/eval", help="where the runs and the comparisons go", path=OUTPUT)
    base_model: str | None = option(None, help="the model it was trained from; examined too and compared",
                                    path=MODEL)
    ppl_data: list[str] = option([], help="held-out subject text: perplexity of both models (a small model's exam "
                                          "score can sit at chance while its perplexity shows what it learned)",
                                  path=TEXT_DATA)
    qa_data: str | None = option(None, help="closed-book QA JSON lines ({id, question, reference, key_facts?}): "
                                            "both models answer; scores compared with bootstrap CIs and a sign test",
                                 path=DATA_FILES)
    qa_max_new_tokens: int = option(64, help="longest QA answer, in tokens", min=1)
    general_data: list[Any] = option([], help="general-ability exams (C-Eval, CMMLU or MMLU layout), each a directory "
                                              "or in YAML {path: DIR, subjects: [a, b], split: val, limit: N}: both "
                                              "models answer them (same scoring and shots) and the report says "
                                              "what the tuning cost", path=DATA_FILES)
    general_ppl_data: list[str] = option([], help="general text files: both models' perplexity and its ratio "
                                                  "(tuned / start)", path=TEXT_DATA)
    train_data: list[str] = option([], help="the training data (the recipe fills in what its pt/sft/dpo stages "
                                            "read): every evaluation file is checked against it for shared "
                                            "passages and near-duplicates, written to leakage.json",
                                   path=TEXT_DATA)
    verdict: dict[str, Any] = option({}, help="the report's verdict thresholds, in YAML, e.g. {alpha: 0.01, "
                                              "general_max_drop: 1.0} (eval/verdict_thresholds.py; README)")

    def __post_init__(self):
        check_options(self)  # every option's choices and min (dtype too), then ExamConfig's cross-field checks
        super().__post_init__()
        general_exams(list(self.general_data))  # a malformed item is an error now, not after the subject exam
        thresholds_from(self.verdict)


def exam_config(config: EvalStageConfig, model: str, out: Path, **overrides: Any) -> ExamConfig:
    """The stage's exam keys as an `eval exam` config for one model (overrides: another exam's data, subjects...)."""
    return config_from(ExamConfig, config, model=model, output_dir=str(out), overwrite=not config.resume, **overrides)


def evaluation_files(config: EvalStageConfig) -> list[str]:
    """Everything the stage evaluates on: the overlap check looks for each of them in the training data."""
    files = [config.data] if config.data else []
    files += [config.qa_data] if config.qa_data else []
    return files + list(config.ppl_data) + [e.path for e in general_exams(list(config.general_data))] \
        + list(config.general_ppl_data)


def _leakage(config: EvalStageConfig, out: Path) -> str:
    """Check every evaluation file against the training data; write leakage.json; one summary line."""
    from subjectlm.data.overlap import OverlapConfig, find_overlap
    from subjectlm.io import write_json

    report = find_overlap(list(config.train_data), evaluation_files(config), OverlapConfig())
    write_json(out / LEAKAGE, report.to_json())
    return f"leakage: {len(report.flagged)} evaluation items overlap the training data ({LEAKAGE})"


def _ppl(config: EvalStageConfig, model: str, out: Path) -> float:
    from subjectlm.eval.ppl import PPLConfig, run_ppl

    result = run_ppl(PPLConfig(**model_options(config.model_spec(model=model), PPLConfig), data=list(config.ppl_data),
                               output=str(out)), log=lambda *_: None)
    return result["overall"]["ppl"]


def _qa(config: EvalStageConfig, base_model: str | None, out: Path) -> dict[str, Any]:
    from subjectlm.eval.qa.runner import QAConfig, run_qa

    qa = QAConfig(**model_options(config.model_spec(), QAConfig), base_model=base_model, data=str(config.qa_data),
                  max_new_tokens=config.qa_max_new_tokens, output_dir=str(out), resume=config.resume,
                  overwrite=not config.resume)
    return run_qa(qa, log=lambda *_: None)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _exam_line(tuned: dict[str, Any], base: dict[str, Any] | None, compared: dict[str, Any] | None) -> str:
    """Accuracy per scoring mode; with a base model, its accuracy and the paired McNemar p beside it."""
    parts = []
    for mode, numbers in tuned["modes"].items():
        text = f"{mode} {_pct(numbers['macro'])}"
        if base is not None and compared is not None:
            text += (f" (base {_pct(base['modes'][mode]['macro'])}, "
                     f"McNemar p={compared['modes'][mode]['overall']['p_value']:.3g})")
        parts.append(text)
    return f"exam over {tuned['count']} questions: " + ", ".join(parts)


def _qa_line(result: dict[str, Any]) -> str:
    if "compare" not in result:
        s = result["scores"]
        return f"QA f1 {s['f1']:.3f}, reference log-lik {s['ref_logprob']:.3f} over {result['n']} questions"
    parts = []
    for score in ("ref_logprob", "f1", "key_fact_recall"):
        c = result["compare"]["scores"].get(score)
        if c:
            parts.append(f"{score} {c['mean_before']:.3f} → {c['mean_after']:.3f} "
                         f"(Δ {c['mean_diff']:+.3f}, 95% CI [{c['ci'][0]:+.3f}, {c['ci'][1]:+.3f}], "
                         f"sign test p={c['p_value']:.3g})")
    return f"QA over {result['compare']['n_common']} questions: " + ", ".join(parts)


def run(config: EvalStageConfig, scorers: Mapping[str, Scorer] | None = None) -> dict[str, Any]:
    """`scorers`: the subject exam's scoring table (default: eval/exam/scoring.py's; compat/cla3 passes its own)."""
    from subjectlm.eval.exam.compare import compare_runs
    from subjectlm.eval.exam.runner import run_exam
    from subjectlm.eval.exam.scoring import SCORERS
    from subjectlm.models import resolve_model

    out = Path(config.output_dir)
    same = config.base_model is None or resolve_model(config.base_model) == resolve_model(config.model)
    base_model = None if same else config.base_model
    leakage = _leakage(config, out) if config.train_data else None  # cheap, and worth knowing before the exams
    scorers = SCORERS if scorers is None else scorers
    tuned = run_exam(exam_config(config, config.model, out / "model"), scorers=scorers)
    base = run_exam(exam_config(config, base_model, out / "base"), scorers=scorers) if base_model else None
    compared = compare_runs(out / "base", out / "model", out / "compare") if base_model else None
    lines = [_exam_line(tuned, base, compared)]
    result: dict[str, Any] = {"exam": {"model": str(out / "model")}}
    if base_model:
        result["exam"].update(base=str(out / "base"), compare=str(out / "compare"))
    if config.ppl_data:
        ppl = {"model": _ppl(config, config.model, out / "ppl_model.json")}
        if base_model:
            ppl["base"] = _ppl(config, base_model, out / "ppl_base.json")
        lines.append(f"held-out perplexity {ppl['model']:.2f}" + (f" (base {ppl['base']:.2f})" if base_model else ""))
        result["ppl"] = ppl
    if config.qa_data:
        qa = _qa(config, base_model, out / "qa")
        lines.append(_qa_line(qa))
        result["qa"] = qa["compare"]["scores"] if base_model else qa["scores"]
    if (config.general_data or config.general_ppl_data) and base_model:
        from subjectlm.eval.general import retention_line, run_general

        lines.append(retention_line(run_general(config, base_model, out, exam_config)))
    elif config.general_data or config.general_ppl_data:
        lines.append("general ability: not compared (the model is the starting model: no base_model to compare with)")
    if leakage:
        lines.append(leakage)
    return {"summary": "; ".join(lines), **result}
