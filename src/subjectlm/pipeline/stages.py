"""The stage table: every kind of recipe stage, one line each.

A kind names its config dataclass and its run function as "module:attribute", imported only when
used (so that `run --dry-run` loads no torch), and says

    inputs    what it takes from the pipeline when the recipe leaves a field out:
              config field -> PipelineState attribute (model, start_model, adapter, adapter_list,
              training_data); used only when the config has that field
    outputs   what it will hand on, before it has run (the dry run checks later stages against it):
              a function of its built config returning a StageResult with the paths it will write
    check     `data check` of what it reads, for the dry run (pipeline/data_checks.py), or None

Adding a stage kind: a config dataclass (path fields declared with `option(path=...)`), a run
function returning a StageResult (subjectlm.pipeline.result) or the legacy dict, and one line here.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, Mapping

from subjectlm.pipeline.result import StageResult


def _load(target: Any) -> Any:
    """"module:attribute" imported now (looked up on each call, so a patched module attribute is used)."""
    if not isinstance(target, str):
        return target
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


@dataclasses.dataclass(frozen=True)
class StageKind:
    config: str | type
    run: str | Callable[[Any], Any]
    inputs: Mapping[str, str] = dataclasses.field(default_factory=dict)
    outputs: str | Callable[[Any], StageResult] | None = None
    check: str | Callable[[dict[str, Any]], list] | None = None

    def config_class(self) -> type:
        return _load(self.config)

    def run_function(self) -> Callable[[Any], Any]:
        return _load(self.run)

    def planned_outputs(self, config: Any) -> StageResult:
        return _load(self.outputs)(config) if self.outputs is not None else StageResult()

    def data_problems(self, values: dict[str, Any]) -> list:
        return _load(self.check)(values) if self.check is not None else []


def trained_outputs(config: Any) -> StageResult:
    """pt/sft/dpo: a full model when fully fine-tuned, else an adapter, in output_dir."""
    if getattr(config, "full_finetuning", False):
        return StageResult(model=config.output_dir)
    return StageResult(adapter=config.output_dir)


def model_output(config: Any) -> StageResult:
    return StageResult(model=config.output_dir)


_TRAIN = "subjectlm.train.config:"
_CHECKS = "subjectlm.pipeline.data_checks:"
_CONTINUES = {"model": "model", "peft_path": "adapter"}  # sft and dpo continue the adapter before them
_COMPARES = {"model": "model", "base_model": "start_model"}

STAGE_KINDS: dict[str, StageKind] = {
    "synth": StageKind("subjectlm.synth.config:SynthConfig", "subjectlm.synth.recipe_stage:run", {},
                       "subjectlm.synth.recipe_stage:planned_outputs"),
    "pt": StageKind(_TRAIN + "PTConfig", "subjectlm.train.pt:run", {"model": "model"}, trained_outputs,
                    _CHECKS + "check_pt"),
    "sft": StageKind(_TRAIN + "SFTConfig", "subjectlm.train.sft:run", _CONTINUES, trained_outputs, _CHECKS + "check_sft"),
    "dpo": StageKind(_TRAIN + "DPOConfig", "subjectlm.train.dpo:run", _CONTINUES, trained_outputs, _CHECKS + "check_dpo"),
    "merge": StageKind("subjectlm.merge:MergeConfig", "subjectlm.merge:run", {"base": "model", "lora": "adapter_list"},
                       model_output),
    # eval/recipe_stage.py's stage with the old script's keys (few_shot, do_save_csv, ...) and take{K}/ files
    "eval": StageKind("subjectlm.compat.cla3.recipe_stage:EvalStageFlags", "subjectlm.compat.cla3.recipe_stage:run",
                      {**_COMPARES, "train_data": "training_data"}, None, _CHECKS + "check_eval"),
    "export": StageKind("subjectlm.export.job:ExportStageConfig", "subjectlm.export.job:run", {"model": "model"}),
    "arena": StageKind("subjectlm.arena.recipe_stage:ArenaStageConfig", "subjectlm.arena.recipe_stage:run", _COMPARES, None,
                       _CHECKS + "check_arena"),
}
