"""The recipe's eval stage with the old script's keys: what pipeline/stages.py names for the `eval` kind.

    - stage: eval
      data: exam
      few_shot: false      # any of flags.py's OldScriptFlags: few_shot, do_test, do_save_csv,
      do_save_csv: true    # prompt_style, verbose, use_flash_attention_2

The stage's config is EvalStageConfig's keys and these (as ExamFlags is ExamConfig's and these for `eval
exam`). They take their old meaning when the config is built, so the config the pipeline records and checks
is the one the stage runs (shots 0, split test, ...). `run` runs the eval stage itself (eval/recipe_stage.py),
with the old one-token letter scorer under prompt_style cla3, then writes take{K}/ (outputs.py) beside each
exam run, model/ and base/, as every eval stage on a C-Eval exam did before these keys moved here.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

from subjectlm.compat.cla3.flags import OLD_KEYS, OldScriptFlags, notes, translate
from subjectlm.config import check_options, config_from, to_dict
from subjectlm.eval.recipe_stage import EvalStageConfig, exam_config


@dataclasses.dataclass(kw_only=True)
class EvalStageFlags(OldScriptFlags, EvalStageConfig):
    """What the recipe's eval stage reads: EvalStageConfig's keys, then the old script's."""

    def __post_init__(self):
        check_options(self)  # types and choices, the old keys' too, before they are read
        values = {k: v for k, v in to_dict(self).items() if k not in OLD_KEYS}
        for key, value in translate(values, old_flags(self)).items():
            setattr(self, key, value)
        super().__post_init__()  # EvalStageConfig's checks, on the translated values


def old_flags(config: EvalStageFlags) -> OldScriptFlags:
    return OldScriptFlags(**{key: getattr(config, key) for key in OLD_KEYS})


def run(config: EvalStageFlags, log: Callable[[str], None] = print) -> dict[str, Any]:
    """The eval stage (eval/recipe_stage.py run), then the old take{K}/ files of each exam run."""
    from subjectlm.compat.cla3.outputs import write_takes
    from subjectlm.compat.cla3.scorer import cla3_scorer
    from subjectlm.eval import recipe_stage
    from subjectlm.eval.exam.cloze import LETTER
    from subjectlm.eval.exam.scoring import SCORERS

    old = old_flags(config)
    stage = config_from(EvalStageConfig, config)
    for line in notes(old):
        log(line)
    scorers = SCORERS
    if old.prompt_style == "cla3":  # --verbose prints each question on stdout, as the old script did
        scorers = {**SCORERS, LETTER: cla3_scorer(old.few_shot, old.verbose)}
    result = recipe_stage.run(stage, scorers=scorers)
    out = Path(stage.output_dir)
    for key, model in (("model", stage.model), ("base", stage.base_model)):
        if key in result["exam"]:
            write_takes(exam_config(stage, model, out / key), old.do_save_csv, log)
    return result
