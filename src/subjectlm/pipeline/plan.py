"""The plan: which stages of a recipe run, what each reads and writes, and why it runs or is skipped.

`plan()` is the one walk over the recipe: `run --dry-run` prints it, and `run` executes it
(pipeline/execute.py), so the two cannot disagree on what runs. It checks everything a dry run
checks without loading a model or torch (the YAML, every stage's keys, config, paths, named
outputs and data, pipeline/stage_checks.py) and decides each stage: run (never run, `--force`, its
key changed, or an upstream stage runs and it reads what that one writes), skip (finished, key
unchanged, outputs present), or not selected (`--only`). A stage that will run hands the next
ones the outputs it will write (the stage table's `outputs`); a skipped one, what it recorded.
After the stages, the checks across the whole plan (pipeline/plan_checks.py) add their lines.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from subjectlm.config import MODEL, ConfigError, path_roles
from subjectlm.data.check import finding_lines, verdict
from subjectlm.data.errors import Problem
from subjectlm.models import DEFAULT_MODEL_ALIASES
from subjectlm.pipeline.freshness import input_fingerprints, stage_key, why_run
from subjectlm.pipeline.recipe import Recipe, RecipeError, Stage, load_recipe
from subjectlm.pipeline.result import StageResult
from subjectlm.pipeline.stage_checks import built_config, key_problems, path_problems
from subjectlm.pipeline.stages import STAGE_KINDS
from subjectlm.pipeline.state import PipelineState, StageRecord, read_records
from subjectlm.pipeline.values import paths_in, stage_values, trained_on


@dataclasses.dataclass
class PlannedStage:
    stage: Stage
    values: dict[str, Any]           # what its config is built from (pipeline/values.py)
    reads: dict[str, Any]            # path field -> path(s) or model name
    writes: str                      # its output folder
    reason: str | None               # why it would run; None: it would not
    selected: bool = True            # False: left out by --only
    record: StageRecord | None = None  # how it finished before (pipeline_state.json)
    outputs: StageResult | None = None  # what it hands on: what it will write if it runs, else its record's
    trained_on: list[str] = dataclasses.field(default_factory=list)

    @property
    def name(self) -> str:
        return self.stage.name

    @property
    def kind(self) -> str:
        return self.stage.kind

    @property
    def runs(self) -> bool:
        return self.selected and self.reason is not None

    def status(self) -> str:
        if not self.selected:
            return "not selected (--only)" + ("" if self.record else "; never run: later stages lack its outputs")
        return "skip (done, inputs unchanged)" if self.reason is None else f"run ({self.reason})"


@dataclasses.dataclass
class Plan:
    path: Path
    recipe: Recipe | None = None     # None: the recipe itself could not be read (see problems)
    steps: list[PlannedStage] = dataclasses.field(default_factory=list)
    problems: list[Problem] = dataclasses.field(default_factory=list)
    warnings: list[Problem] = dataclasses.field(default_factory=list)
    records: dict[str, StageRecord] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)  # from the checks across the whole plan

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def output_dir(self) -> Path | None:
        return self.recipe.output_dir if self.recipe else None

    def add(self, found: list[Problem]) -> None:
        for problem in found:
            (self.warnings if problem.warning else self.problems).append(problem)

    def across_the_plan(self, indent: str = "") -> list[str]:
        """The lines of the checks across the whole plan (the leakage counts), under their heading; none
        when no check said anything."""
        if not self.notes:
            return []
        return [f"{indent}across the plan:"] + [f"{indent}  {note}" for note in self.notes]

    def format(self) -> str:
        lines = [f"recipe: {self.path}" + (f" -> {_short(self.output_dir)}" if self.output_dir else "")]
        width = max((len(s.name) for s in self.steps), default=4)
        for i, s in enumerate(self.steps, start=1):
            lines.append(f"  {i}. {s.name:<{width}}  {s.kind:<6}  {s.status()}")
            for key, value in s.reads.items():
                lines.append(f"       {key:<15} {_shown(value)}")
            lines.append(f"       {'-> writes':<15} {_short(s.writes)}")
        lines += self.across_the_plan(indent="  ")
        lines += finding_lines(self.problems, self.warnings, strict=False, show=100)
        lines.append(verdict(self.problems, self.warnings, strict=False, has_strict=False))
        return "\n".join(lines)


def _short(value: Any) -> str:
    """A path relative to the working directory when it is under it."""
    try:
        return str(Path(value).resolve().relative_to(Path.cwd()))
    except (ValueError, TypeError, OSError):
        return str(value)


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(map(_shown, value))
    if isinstance(value, dict) and "path" in value:
        rest = ", ".join(f"{k} {v}" for k, v in value.items() if k != "path")
        return _short(value["path"]) + (f" ({rest})" if rest else "")
    return _short(value)


def _writer(path: str, running: dict[str, list[str]]) -> str | None:
    """The stage (of those that will run) that writes this path or a folder holding it, if any."""
    for name, written in running.items():
        if any(w and (path == w or path.startswith(w.rstrip("/") + "/")) for w in written):
            return name
    return None


def _plan_stage(plan: Plan, recipe: Recipe, stage: Stage, state: PipelineState, running: dict[str, list[str]],
                force: bool, selected: bool) -> PlannedStage:
    kind = STAGE_KINDS[stage.kind]
    config_cls = kind.config_class()
    roles = path_roles(config_cls)
    found: list[Problem] = []
    values = stage_values(recipe, stage, kind, state, lambda where, message: found.append(
        Problem(str(recipe.path), recipe.line(*where), f"stage {stage.name}", message)))
    config = None
    bad_keys = key_problems(recipe, stage, config_cls)
    found += bad_keys
    if not bad_keys:
        config, problems = built_config(recipe, stage, config_cls, values)
        found += problems
    for key, raw in stage.config.items():
        if key in roles:
            found += path_problems(recipe, ("stages", stage.index, key), f"stage {stage.name}", key, roles[key], raw)
    found += kind.data_problems(values)
    plan.add(found)

    reads = {k: v for k, v in values.items() if k in roles and not roles[k].writes and v not in (None, "", [])}
    record = plan.records.get(stage.name)
    upstream = next((n for v in reads.values() for p in paths_in(v) if (n := _writer(p, running))), None)
    if not selected:
        reason = None  # not run; later stages build on what it recorded, if anything
    elif upstream:
        reason = f"upstream {upstream} runs"
    else:
        inputs = input_fingerprints(values, roles)
        reason = why_run(record, stage_key(values, inputs), inputs, force)
    step = PlannedStage(stage, values, reads, str(values.get("output_dir", "")), reason, selected, record,
                        trained_on=trained_on(values, config_cls))
    if step.runs:
        step.outputs = kind.planned_outputs(config) if config is not None else None
        running[stage.name] = [step.writes] + [str(p) for p in (step.outputs.outputs().values() if step.outputs else [])]
    elif record is not None:
        step.outputs = record.result
    return step


def plan(path: str | Path, force: bool = False, only: list[str] | None = None) -> Plan:
    """Every finding in the recipe and what `subjectlm run` would do with it (see the module docstring)."""
    from subjectlm.pipeline.plan_checks import PLAN_CHECKS

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    result = Plan(path)
    try:
        recipe = load_recipe(path)
    except RecipeError as exc:  # the YAML itself, or the stage list: nothing further can be checked
        result.add([exc.problem])
        return result
    result.recipe = recipe
    if recipe.model not in DEFAULT_MODEL_ALIASES:
        result.add(path_problems(recipe, ("model",), "recipe", "model", MODEL, recipe.model_as_written))
    result.records = read_records(recipe.output_dir)
    state = PipelineState.start(recipe.model)
    running: dict[str, list[str]] = {}  # stage name -> what it writes, for the stages that will run
    for stage in recipe.stages:
        step = _plan_stage(result, recipe, stage, state, running, force, selected=not only or stage.name in only)
        result.steps.append(step)
        state.advance(stage.name, step.outputs, step.trained_on)
        if step.runs and step.outputs is None:
            state.results[stage.name] = None  # it runs, but its config has errors: what it writes is unknown
    for check in PLAN_CHECKS:
        notes, found = check(result)
        result.notes += notes
        result.add(found)
    return result
