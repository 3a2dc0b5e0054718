"""`subjectlm run RECIPE.yaml`: execute the plan (pipeline/plan.py), stage by stage.

The plan is made first, with every check of `run --dry-run`; any error stops the run there, before
an hour of training. Then each stage the plan runs is run, its config built from the outputs the
stages before it actually handed on, and recorded in pipeline_state.json (kind, key, input
fingerprints, result, config, seconds) as soon as it finishes, so a killed run resumes at the next
stage. A stage the plan skips hands on what it recorded. The run ends with the report.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable

from subjectlm.config import ConfigError, build_config, path_roles, to_dict
from subjectlm.data.check import finding_lines
from subjectlm.errors import UserError
from subjectlm.pipeline.freshness import input_fingerprints, stage_key
from subjectlm.pipeline.plan import Plan, PlannedStage, plan
from subjectlm.pipeline.recipe import Recipe, RecipeError
from subjectlm.pipeline.result import StageResult
from subjectlm.pipeline.stages import STAGE_KINDS
from subjectlm.pipeline.state import PipelineState, StageRecord, write_records
from subjectlm.pipeline.values import stage_values, trained_on


@dataclasses.dataclass
class StageOutcome:
    name: str
    stage: str
    status: str  # done | skipped
    summary: str = ""
    seconds: float = 0.0


def require_valid_plan(path: str | Path, force: bool = False, only: list[str] | None = None,
                       log: Callable[[str], None] = print) -> Plan:
    """The plan, its warnings printed; any error refused before a stage runs."""
    planned = plan(path, force=force, only=only)
    for line in planned.across_the_plan():  # the leakage counts, as the dry run prints them, before any training
        log(line)
    for line in finding_lines([], planned.warnings, strict=False, show=20):
        log(line)
    if len(planned.problems) == 1:
        raise ConfigError(f"{planned.problems[0]} (found by the recipe check: no stage was run)")
    if planned.problems:
        raise ConfigError(f"{path}: the recipe check found {len(planned.problems)} problems; no stage was run "
                          f"(`subjectlm run {path} --dry-run` shows the plan):\n"
                          + "\n".join(f"  {p}" for p in planned.problems[:30]))
    return planned


def _run_stage(recipe: Recipe, step: PlannedStage, state: PipelineState, log: Callable[[str], None]
               ) -> tuple[StageRecord, list[str]]:
    """Build the stage's config from what the stages before it handed on, run it, and record it."""
    stage, kind = step.stage, STAGE_KINDS[step.kind]
    config_cls = kind.config_class()

    def fail(where: tuple, message: str) -> None:  # the plan found none; an output that vanished since
        raise RecipeError(recipe.path, recipe.line(*where), f"stage {stage.name}", message)

    values = stage_values(recipe, stage, kind, state, fail)
    config = build_config(config_cls, values, source=f"{recipe.where('stages', stage.index)}: stage {stage.name!r}")
    inputs = input_fingerprints(values, path_roles(config_cls))
    log(f"[{stage.name}] running {stage.kind} ({step.reason}) ...")
    start = time.time()
    try:
        result = StageResult.of(kind.run_function()(config))
    except UserError:
        log(f"[{stage.name}] failed")
        raise
    seconds = time.time() - start
    log(f"[{stage.name}] done in {seconds:.0f}s: {result.summary}")
    record = StageRecord(stage.kind, stage_key(values, inputs), inputs, result, to_dict(config), round(seconds, 1))
    return record, trained_on(values, config_cls)


def run_recipe(path: str | Path, force: bool = False, only: list[str] | None = None,
               log: Callable[[str], None] = print) -> list[StageOutcome]:
    planned = require_valid_plan(path, force=force, only=only, log=log)
    recipe = planned.recipe
    assert recipe is not None  # a recipe that could not be read is a problem, refused above
    recipe.output_dir.mkdir(parents=True, exist_ok=True)
    records = dict(planned.records)
    state = PipelineState.start(recipe.model)
    outcomes = []
    for step in planned.steps:
        if not step.runs:  # later stages still build on what it recorded
            if step.selected:
                summary = step.record.result.summary if step.record else ""
                log(f"[{step.name}] already done: {summary} (inputs unchanged; --force re-runs it)")
                outcomes.append(StageOutcome(step.name, step.kind, "skipped", summary))
            state.advance(step.name, step.record.result if step.record else None, step.trained_on)
            continue
        record, data = _run_stage(recipe, step, state, log)
        records[step.name] = record
        write_records(recipe.output_dir, records)
        outcomes.append(StageOutcome(step.name, step.kind, "done", record.result.summary, record.seconds or 0.0))
        state.advance(step.name, record.result, data)
    from subjectlm.report import write_report  # one validation page over every stage's outputs

    log(f"report: {write_report(recipe.output_dir)}")
    return outcomes
