"""The leakage check across the plan: is what an evaluation stage asks in the data trained on before it?

For every eval stage (its exam, QA, held-out and general files: eval/recipe_stage.py `evaluation_files`, the
same list its run checks into leakage.json) and arena stage (its prompts), the data of every pt, sft
and dpo stage before it, through the overlap engine (subjectlm.data.overlap, its default thresholds).
Evaluation stages after the same training data share one index and one report. `run --dry-run`
prints, under "across the plan:", the items checked and flagged per evaluation source and the first
flagged items, each at its file:line with the training file:line it matched:

    leakage of eval (vs the data of pt, sft: 2 path(s), 412 record(s)): 104 item(s) checked, 1 flagged
      exam    data/exam          64 item(s), 1 flagged
      qa      data/qa.jsonl      40 item(s), 0 flagged
      flagged: data/exam/val/geo_val.csv:3 (geo/0) matches data/sft/qa.jsonl:12 (run of 15 tokens)

A flagged item is a warning (one per evaluation stage): the run goes on. Data that does not exist yet
(a `{from: STAGE, output: NAME}` a stage of this run writes) is listed as not checked.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from subjectlm.data.errors import Problem
from subjectlm.errors import UserError
from subjectlm.pipeline.plan import _short
from subjectlm.pipeline.stage_checks import built_config
from subjectlm.pipeline.stages import STAGE_KINDS

if TYPE_CHECKING:
    from subjectlm.data.overlap import Flag, OverlapReport
    from subjectlm.pipeline.plan import Plan, PlannedStage

FLAGGED_SHOWN = 10  # flagged items listed per report; the rest are counted


def _eval_stage_files(config: Any) -> list[str]:
    from subjectlm.eval.recipe_stage import evaluation_files

    return evaluation_files(config)


# the config class of an evaluating stage kind -> what a config of it evaluates on
EVALUATES: dict[str, Callable[[Any], list[str]]] = {
    "subjectlm.eval.recipe_stage:EvalStageConfig": _eval_stage_files,
    "subjectlm.arena.recipe_stage:ArenaStageConfig": lambda config: [config.prompts] if config.prompts else [],
}


def _evaluates(step: PlannedStage) -> Callable[[Any], list[str]] | None:
    for cls in STAGE_KINDS[step.kind].config_class().__mro__:  # a subclass (compat/cla3's EvalStageFlags) too
        if (files_of := EVALUATES.get(f"{cls.__module__}:{cls.__qualname__}")) is not None:
            return files_of
    return None


def _evaluation_files(plan: Plan, step: PlannedStage) -> list[str] | None:
    """The files the stage evaluates on; None when it evaluates nothing, or its config has errors (reported
    by the stage itself)."""
    if (files_of := _evaluates(step)) is None:
        return None
    config, problems = built_config(plan.recipe, step.stage, STAGE_KINDS[step.kind].config_class(), step.values)
    return None if config is None or problems else [str(p) for p in files_of(config)]


def _unique(paths: list[str]) -> list[str]:
    return list(dict.fromkeys(paths))


def _why_missing(path: str, before: list[PlannedStage]) -> str:
    """Why a path the plan names is not there: a stage before writes it, or nothing does."""
    for step in before:
        written = [step.writes] + [str(p) for p in (step.outputs.outputs().values() if step.outputs else [])]
        if any(w and (path == w or path.startswith(w.rstrip("/") + "/")) for w in written):
            return f"not written yet ({step.name} writes it)"
    return "does not exist"


def _trainer_of(path: str, before: list[PlannedStage]) -> str:
    return next(s.name for s in before if path in s.trained_on)


def _flag_line(flag: Flag) -> str:
    item = flag.item
    label = f" ({item.label})" if item.label else ""
    if flag.run is not None:
        what = f"all {flag.run.length} tokens" if flag.run.whole else f"run of {flag.run.length} tokens"
        file, line = flag.run_train
    else:
        what = f"Jaccard {flag.similar.jaccard:.2f}"
        file, line = flag.similar_train
    return f"flagged: {_short(item.file)}:{item.line}{label} matches {_short(file)}:{line} ({what})"


def _first_problem(exc: UserError) -> str:
    problems = getattr(exc, "problems", None)  # a DataError: its first bad record
    return str(problems[0]) if problems else str(exc).splitlines()[0]


def _overlap(train: list[str], evals: list[str], notes: list[str]) -> OverlapReport | None:
    """The overlap report; an evaluation file no reader takes is left out (and noted), and so is the
    whole report when the training files hold no record."""
    from subjectlm.data.overlap import OverlapConfig, find_overlap
    from subjectlm.data.overlap_sources import eval_items

    config = OverlapConfig()
    try:
        return find_overlap(train, evals, config)
    except UserError as exc:
        failed = exc
    bad = []
    for path in evals:  # which evaluation file it was, if any (they are read first)
        try:
            eval_items([path], config.window, config.ngram)
        except UserError as exc:
            bad.append(path)
            notes.append(f"  not checked: {_short(path)}: {_first_problem(exc)}")
    if not bad:
        notes.append(f"  not checked: {_first_problem(failed)}")
        return None
    good = [p for p in evals if p not in bad]
    return _overlap(train, good, notes) if good else None


def _report_lines(report: OverlapReport) -> list[str]:
    counts = report.counts()
    rows = counts["by_source"]
    width = max(len(_short(s)) for s in rows)
    lines = [f"  {row['kind']:<6}  {_short(source):<{width}}  {row['items']} item(s), {row['flagged']} flagged"
             for source, row in rows.items()]
    lines += ["  " + _flag_line(flag) for flag in report.flagged[:FLAGGED_SHOWN]]
    if len(report.flagged) > FLAGGED_SHOWN:
        lines.append(f"  and {len(report.flagged) - FLAGGED_SHOWN} more")
    return lines


@dataclasses.dataclass
class _Group:
    """Evaluation stages after the same training data: one index, one report."""

    train: list[str]                  # every path trained on before them, in order
    before: list[PlannedStage]        # the stages before the last of them
    evaluating: list[tuple[PlannedStage, list[str]]] = dataclasses.field(default_factory=list)  # with their files

    @property
    def names(self) -> str:
        return ", ".join(step.name for step, _ in self.evaluating)

    @property
    def trainers(self) -> str:
        return ", ".join(s.name for s in self.before if s.trained_on)


def _groups(plan: Plan) -> list[_Group]:
    groups: dict[tuple[str, ...], _Group] = {}
    for i, step in enumerate(plan.steps):
        if (files := _evaluation_files(plan, step)) is None:
            continue
        # "<stage.output>": a reference with an error, reported where it is written
        train = _unique([p for s in plan.steps[:i] for p in s.trained_on if not p.startswith("<")])
        group = groups.setdefault(tuple(train), _Group(train, plan.steps[:i]))
        group.before = plan.steps[:i]
        group.evaluating.append((step, [f for f in files if not f.startswith("<")]))
    return list(groups.values())


def _check_group(plan: Plan, group: _Group) -> tuple[list[str], list[Problem]]:
    if not group.train:
        return [f"leakage of {group.names}: not checked: no training stage before it"], []
    notes = [f"  not checked: {_short(p)} (data of {_trainer_of(p, group.before)}): {_why_missing(p, group.before)}"
             for p in group.train if not Path(p).exists()]
    evals = []
    for path in _unique([f for _, files in group.evaluating for f in files]):
        if Path(path).exists():
            evals.append(path)
        else:
            notes.append(f"  not checked: {_short(path)}: {_why_missing(path, group.before)}")
    train = [p for p in group.train if Path(p).exists()]
    report = _overlap(train, evals, notes) if train and evals else None
    head = f"leakage of {group.names} (vs the data of {group.trainers}"
    if report is None:
        return [head + "): not checked", *notes], []
    counts = report.counts()
    lines = [f"{head}: {len(train)} path(s), {report.train_records} record(s)): "
             f"{counts['items']} item(s) checked, {counts['flagged']} flagged", *_report_lines(report), *notes]
    found = []
    for step, files in group.evaluating:
        flagged = sum(1 for flag in report.flagged if flag.item.source in files)
        if flagged:
            found.append(Problem(str(plan.recipe.path), plan.recipe.line("stages", step.stage.index),
                                 f"stage {step.name}", f"{flagged} evaluation item(s) overlap the training data "
                                 "before it (listed under 'across the plan')", warning=True))
    return lines, found


def leakage_check(plan: Plan) -> tuple[list[str], list[Problem]]:
    """The check (see the module docstring): its lines for "across the plan:", a warning per stage with flags."""
    lines: list[str] = []
    found: list[Problem] = []
    for group in _groups(plan) if plan.recipe is not None else []:
        group_lines, group_found = _check_group(plan, group)
        lines += group_lines
        found += group_found
    return lines, found
