"""`subjectlm run RECIPE --dry-run`: everything wrong with a recipe, found in seconds, and its plan.

Checked without loading a model or torch: the YAML (a syntax error names its line and column; a
tab in the indentation names its line), every stage name and key against that stage's config
dataclass (a typo gets a suggestion), every path the recipe names (missing: error; a relative
path climbing out of the recipe's folder: warning; outputs may go anywhere), and every stage's
data with `data check` (training files, the exam folder, held-out text, QA, arena prompts).
The plan lists each stage with what it reads, where it writes, and whether it would run (and
why) or be skipped. `subjectlm run` makes the same check before its first stage.
"""

from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path
from typing import Any, Callable

from subjectlm import recipe as recipes
from subjectlm.config import ConfigError, build_config
from subjectlm.data.check import finding_lines, verdict
from subjectlm.data.errors import DataError, Problem
from subjectlm.models import DEFAULT_MODEL_ALIASES
from subjectlm.recipe import (
    PATH_KEYS,
    RecipeError,
    advance_state,
    key_line,
    load_recipe,
    read_state,
    stage_name,
    stage_values,
    start_state,
)
from subjectlm.recipe_freshness import MODEL_KEYS, OUTPUT_KEYS, TRAINING_STAGES, input_fingerprints, stage_key, why_run

_SOURCE = "\x00"  # marks the start of build_config's messages, so the key they name can be found


@dataclasses.dataclass
class PlannedStage:
    name: str
    stage: str
    reads: dict[str, Any]  # config key -> path(s) or model name
    writes: str
    reason: str | None  # why it would run; None: it would not
    selected: bool = True  # False: left out by --only
    recorded: bool = False  # it finished before (pipeline_state.json)

    def status(self) -> str:
        if not self.selected:
            return "not selected (--only)" + ("" if self.recorded else "; never run: later stages lack its outputs")
        return "skip (done, inputs unchanged)" if self.reason is None else f"run ({self.reason})"


@dataclasses.dataclass
class RecipeCheck:
    path: Path
    problems: list[Problem] = dataclasses.field(default_factory=list)
    warnings: list[Problem] = dataclasses.field(default_factory=list)
    plan: list[PlannedStage] = dataclasses.field(default_factory=list)
    output_dir: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, found: list[Problem]) -> None:
        for problem in found:
            (self.warnings if problem.warning else self.problems).append(problem)

    def format(self) -> str:
        lines = [f"recipe: {self.path}" + (f" -> {_short(self.output_dir)}" if self.output_dir else "")]
        width = max((len(s.name) for s in self.plan), default=4)
        for i, s in enumerate(self.plan, start=1):
            lines.append(f"  {i}. {s.name:<{width}}  {s.stage:<6}  {s.status()}")
            for key, value in s.reads.items():
                shown = ", ".join(map(_short, value)) if isinstance(value, list) else _short(value)
                lines.append(f"       {key:<15} {shown}")
            lines.append(f"       {'-> writes':<15} {_short(s.writes)}")
        lines += finding_lines(self.problems, self.warnings, strict=False, show=100)
        lines.append(verdict(self.problems, self.warnings, strict=False))
        return "\n".join(lines)


def _short(value: Any) -> str:
    """A path relative to the working directory when it is under it."""
    try:
        return str(Path(value).resolve().relative_to(Path.cwd()))
    except (ValueError, TypeError, OSError):
        return str(value)


def _problem(recipe: dict[str, Any], where: tuple, field: str, message: str, warning: bool = False) -> Problem:
    return Problem(str(recipe["_path"]), key_line(recipe, *where), field, message, warning)


def _key_problems(recipe: dict[str, Any], i: int, stage: dict[str, Any], config_cls: type) -> list[Problem]:
    fields = [f.name for f in dataclasses.fields(config_cls)]
    aliases = {a.lstrip("-") for f in dataclasses.fields(config_cls) for a in f.metadata.get("aliases", ())}
    found = []
    for key in stage:
        if key in ("stage", "name") or key in fields or key in aliases:  # old names as in build_config
            continue
        close = difflib.get_close_matches(str(key), fields, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(sorted(fields))}"
        found.append(_problem(recipe, ("stages", i, key), f"stage {stage_name(stage)}",
                              f"{key}: unknown key for {config_cls.__name__}{hint}"))
    return found


def _config_problems(recipe: dict[str, Any], i: int, stage: dict[str, Any], config_cls: type,
                     values: dict[str, Any]) -> list[Problem]:
    """What building the stage's config finds (types, allowed values, required keys), at the key's line."""
    fields = {f.name for f in dataclasses.fields(config_cls)}
    fields |= {a.lstrip("-") for f in dataclasses.fields(config_cls) for a in f.metadata.get("aliases", ())}
    try:
        build_config(config_cls, {k: v for k, v in values.items() if k in fields}, source=_SOURCE)
    except ConfigError as exc:
        message = str(exc).removeprefix(f"{_SOURCE}: ")
        key = message.split(":", 1)[0]
        where = ("stages", i, key) if key in stage else ("stages", i)
        return [_problem(recipe, where, f"stage {stage_name(stage)}", message)]
    return []


def _path_problems(recipe: dict[str, Any], where: tuple, field: str, key: str, raw: Any, resolved: Any) -> list[Problem]:
    """A path the recipe names: it must exist (unless written by the stage) and should stay in the recipe's folder."""
    if isinstance(raw, list):
        return [p for r, v in zip(raw, resolved) for p in _path_problems(recipe, where, field, key, r, v)]
    if not isinstance(raw, str) or not raw or (key in MODEL_KEYS and raw in DEFAULT_MODEL_ALIASES):
        return []
    found = []
    base = recipe["_base"]
    if not Path(raw).is_absolute() and not Path(resolved).is_relative_to(base):
        found.append(_problem(recipe, where, field, f"{key}: {raw} is outside the recipe's folder ({base}); "
                              "the recipe breaks when its folder is copied or moved", warning=True))
    if key not in OUTPUT_KEYS and not Path(resolved).exists():
        found.append(_problem(recipe, where, field, f"{key}: {raw} does not exist ({resolved})"))
    elif key in MODEL_KEYS and Path(resolved).is_dir() and not (Path(resolved) / "config.json").is_file():
        found.append(_problem(recipe, where, field, f"{key}: {raw} is not a model directory (no config.json)"))
    return found


def _data_problems(kind: str, values: dict[str, Any]) -> list[Problem]:
    """`data check` on what the stage reads (only the paths that exist: missing ones are reported already)."""
    from subjectlm.data.check import check

    def existing(key: str) -> list[str]:
        value = values.get(key) or []
        return [v for v in ([value] if isinstance(value, str) else value) if Path(v).exists()]

    found: list[Problem] = []
    if kind in TRAINING_STAGES:
        for key in ("data", "validation_file"):
            if existing(key):
                report = check(kind, existing(key), txt_mode=values.get("txt_mode", "auto"))
                found += report.problems + report.warnings
    if kind == "eval":
        if existing("data"):
            from subjectlm.eval.exam_check import check_exam

            exam = check_exam(values["data"], values.get("format", "auto"), ("dev", values.get("split", "val")),
                              values.get("subjects") or None)
            found += exam.problems + exam.warnings
        if existing("ppl_data"):
            report = check("pt", existing("ppl_data"))
            found += report.problems + report.warnings
        if existing("qa_data"):
            from subjectlm.eval.qa import read_qa_file

            found += _problems_of(lambda: read_qa_file(values["qa_data"]))
    if kind == "arena" and existing("prompts"):
        from subjectlm.arena.records import load_prompts

        found += _problems_of(lambda: load_prompts(values["prompts"]))
    return found


def _problems_of(read: Callable[[], Any]) -> list[Problem]:
    try:
        read()
    except DataError as exc:
        return list(exc.problems)
    return []


def _predicted_result(kind: str, values: dict[str, Any]) -> dict[str, Any]:
    """What a stage that has not run yet will hand on (so later stages can be checked against it)."""
    if kind in TRAINING_STAGES:
        return {"model" if values.get("full_finetuning") else "adapter": values.get("output_dir")}
    if kind == "merge":
        return {"model": values.get("output_dir")}
    return {}


def _reads(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k in PATH_KEYS and k not in OUTPUT_KEYS and v not in (None, "", [])}


def _under(value: Any, folders: dict[str, str]) -> str | None:
    """The stage (of those that will run) whose output folder holds this path, if any."""
    for item in value if isinstance(value, list) else [value]:
        for name, folder in folders.items():
            if isinstance(item, str) and folder and (item == folder or item.startswith(folder.rstrip("/") + "/")):
                return name
    return None


def check_recipe(path: str | Path, force: bool = False, only: list[str] | None = None) -> RecipeCheck:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    report = RecipeCheck(path)
    try:
        recipe = load_recipe(path)
    except RecipeError as exc:  # the YAML itself, or the stage list: nothing further can be checked
        report.add([exc.problem])
        return report
    report.output_dir = recipe["output_dir"]
    if recipe["model"] not in DEFAULT_MODEL_ALIASES:
        report.add(_path_problems(recipe, ("model",), "recipe", "model", recipe["_model_as_written"], recipe["model"]))
    done = read_state(recipe["output_dir"])
    state = start_state(recipe)
    will_run: dict[str, str] = {}  # stage name -> its output folder, for stages that would run
    for i, stage in enumerate(recipe["stages"]):
        name, kind = stage_name(stage), stage["stage"]
        config_cls, _run = recipes.STAGES[kind]()  # looked up now: tests swap the table
        values = stage_values(stage, state, config_cls, recipe)
        found = _key_problems(recipe, i, stage, config_cls)
        if not found:
            found = _config_problems(recipe, i, stage, config_cls, values)
        for key in stage:
            if key in PATH_KEYS:
                found += _path_problems(recipe, ("stages", i, key), f"stage {name}", key, stage[key], values[key])
        found += _data_problems(kind, values)
        report.add(found)
        previous = done.get(name)
        upstream = next((n for v in _reads(values).values() if (n := _under(v, will_run))), None)
        selected = not only or name in only
        if not selected:
            reason = None  # not run; later stages build on what it recorded, if anything
        elif upstream:
            reason = f"upstream {upstream} runs"
        else:
            inputs = input_fingerprints(kind, values, PATH_KEYS)
            reason = why_run(previous, stage_key(values, inputs), inputs, force)
        if reason is not None:
            will_run[name] = str(values.get("output_dir", ""))
        report.plan.append(PlannedStage(name, kind, _reads(values), str(values.get("output_dir", "")), reason,
                                        selected, previous is not None))
        if reason is None:
            advance_state(state, (previous or {}).get("result", {}))
        else:
            advance_state(state, _predicted_result(kind, values))
    return report


def require_valid_recipe(path: str | Path, log: Callable[[str], None] = print) -> RecipeCheck:
    """What `run` does before its first stage: print the warnings, refuse any error."""
    report = check_recipe(path)
    for line in finding_lines([], report.warnings, strict=False, show=20):
        log(line)
    if len(report.problems) == 1:
        raise ConfigError(f"{report.problems[0]} (found by the recipe check: no stage was run)")
    if report.problems:
        raise ConfigError(f"{path}: the recipe check found {len(report.problems)} problems; no stage was run "
                          f"(`subjectlm run {path} --dry-run` shows the plan):\n"
                          + "\n".join(f"  {p}" for p in report.problems[:30]))
    return report
