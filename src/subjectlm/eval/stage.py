"""The recipe's eval stage: examine the model and, when given, the base model it started from; compare.

    - stage: eval
      data: data/exam          # exam directory (C-Eval layout)
      subjects: [logic]        # optional

The pipeline fills in `model` (the latest model) and `base_model` (the recipe's
starting model). Outputs: output_dir/model, output_dir/base, output_dir/compare.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from subjectlm.config import ConfigError, option


@dataclasses.dataclass(kw_only=True)
class EvalStageConfig:
    model: str = option("default", help="the model to examine")
    base_model: str | None = option(None, help="the model it was trained from; examined too and compared")
    data: str = option(help="exam directory (C-Eval, CMMLU or MMLU layout)")
    format: str = option("auto", help="exam layout: auto, ceval, cmmlu or mmlu")
    split: str = option("val", help="split to answer: val, test or dev")
    subjects: list[str] = option([], help="subjects to run (default: all)")
    shots: int = option(5, help="few-shot examples per subject")
    with_prompt: bool = option(False, help="wrap prompts in the chat template")
    batch_size: int = option(8, help="questions per forward pass")
    limit: int | None = option(None, help="answer only the first N questions per subject")
    dtype: str = option("auto", help="weights dtype")
    output_dir: str = option("runs/eval", help="where the runs and the comparison go")
    ppl_data: list[str] = option([], help="held-out subject text: perplexity of both models (a small model's exam "
                                          "score can sit at chance while its perplexity shows what it learned)")

    def __post_init__(self):
        if not self.data:
            raise ConfigError("data: give an exam directory")


def _exam(config: EvalStageConfig, model: str, out: Path) -> dict[str, Any]:
    from subjectlm.eval.runner import ExamConfig, run_exam

    exam = ExamConfig(model=model, data=config.data, format=config.format, split=config.split,
                      subjects=list(config.subjects), shots=config.shots, with_prompt=config.with_prompt,
                      batch_size=config.batch_size, limit=config.limit, dtype=config.dtype,
                      output_dir=str(out), overwrite=True)
    return run_exam(exam)


def _ppl(config: EvalStageConfig, model: str, out: Path) -> float:
    from subjectlm.eval.ppl import PPLConfig, run_ppl

    result = run_ppl(PPLConfig(model=model, data=list(config.ppl_data), dtype=config.dtype, output=str(out)),
                     log=lambda *_: None)
    return result["overall"]["ppl"]


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def run(config: EvalStageConfig) -> dict[str, Any]:
    from subjectlm.eval.compare import compare_runs
    from subjectlm.models import resolve_model

    out = Path(config.output_dir)
    tuned = _exam(config, config.model, out / "model")
    line = f"accuracy {_pct(tuned['macro'])} over {tuned['count']} questions"
    same = config.base_model is None or resolve_model(config.base_model) == resolve_model(config.model)
    if not same:
        base = _exam(config, config.base_model, out / "base")
        result = compare_runs(out / "base", out / "model", out / "compare")
        o = result["overall"]
        line += (f" (base {_pct(base['macro'])}; paired Δ {100 * o['delta']:+.1f} points over {o['n']} questions, "
                 f"McNemar p={o['p_value']:.3g}); see {out / 'compare' / 'compare.md'}")
    if config.ppl_data:
        line += f"; held-out perplexity {_ppl(config, config.model, out / 'ppl_model.json'):.2f}"
        if not same:
            line += f" (base {_ppl(config, config.base_model, out / 'ppl_base.json'):.2f})"
    return {"summary": line}
