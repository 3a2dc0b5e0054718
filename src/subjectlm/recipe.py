"""`subjectlm run RECIPE.yaml`: run a recipe's stages in order, each feeding the next.

A recipe names a starting model, an output directory and a list of stages:

    model: default            # where the pipeline starts
    output_dir: runs/demo     # each stage writes to output_dir/<stage name>
    stages:
      - stage: pt             # one of STAGES below
        data: data/corpus.txt # any key of that stage's config dataclass
      - stage: sft
        ...

Paths are relative to the recipe file. Every stage module exposes a config
dataclass and `run(config) -> dict`; the dict may name a new full `model`
directory, an `adapter` directory and a one-line `summary`. What a stage takes
from the pipeline when the recipe does not say is the INPUTS table.

Before the first stage starts, the whole recipe is checked (recipe_check.py: the
same check as `run --dry-run`); any error stops it there. A stage is skipped when
its key is unchanged and its outputs are present (unless `force`). The key holds
the stage's resolved config and the fingerprint of everything it reads
(recipe_freshness.py): a changed data file, or an upstream stage that ran again,
re-runs the stage and, through its new outputs, everything downstream, and nothing else.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Callable

import yaml

from subjectlm.config import ConfigError, build_config, to_dict
from subjectlm.data.errors import Problem
from subjectlm.errors import UserError
from subjectlm.io import write_json
from subjectlm.models import DEFAULT_MODEL_ALIASES
from subjectlm.recipe_freshness import MODEL_KEYS, input_fingerprints, stage_key, why_run


# Training runs import torch: their run functions load it only when called, so that loading a
# stage's config (as `run --dry-run` does for every stage) stays light.
def _run_pt(config):
    from subjectlm.train.pt import run
    return run(config)


def _run_sft(config):
    from subjectlm.train.sft import run
    return run(config)


def _run_dpo(config):
    from subjectlm.train.dpo import run
    return run(config)


def _pt():
    from subjectlm.train.config import PTConfig
    return PTConfig, _run_pt


def _sft():
    from subjectlm.train.config import SFTConfig
    return SFTConfig, _run_sft


def _dpo():
    from subjectlm.train.config import DPOConfig
    return DPOConfig, _run_dpo


def _merge():
    from subjectlm.merge import MergeConfig, run
    return MergeConfig, run


def _eval():
    from subjectlm.eval.stage import EvalStageConfig, run
    return EvalStageConfig, run


def _export():
    from subjectlm.export.stage import ExportStageConfig, run
    return ExportStageConfig, run


def _arena():
    from subjectlm.arena.stage import ArenaStageConfig, run
    return ArenaStageConfig, run


# stage name -> loader of (config dataclass, run function); imported only when used.
STAGES: dict[str, Callable[[], tuple[type, Callable[[Any], dict]]]] = {
    "pt": _pt,
    "sft": _sft,
    "dpo": _dpo,
    "merge": _merge,
    "eval": _eval,
    "export": _export,
    "arena": _arena,
}

# config field -> pipeline state key, filled in when the recipe leaves the field out
# and the stage's config has such a field.
INPUTS: dict[str, dict[str, str]] = {
    "pt": {"model": "model"},
    "sft": {"model": "model", "peft_path": "adapter"},
    "dpo": {"model": "model", "peft_path": "adapter"},
    "merge": {"base": "model", "lora": "adapter_list"},
    "eval": {"model": "model", "base_model": "start_model"},
    "export": {"model": "model"},
    "arena": {"model": "model", "base_model": "start_model"},
}

RECIPE_KEYS = {"model", "output_dir", "stages", "description"}
# Keys whose values are paths, resolved against the recipe file's folder.
PATH_KEYS = {"data", "validation_file", "output_dir", "model", "base", "lora", "peft_path", "base_model",
             "prompts", "output", "gguf", "tokenizer", "ppl_data", "qa_data"}


class RecipeError(ConfigError):
    """A recipe that cannot be read (its YAML, its stage list), pinned to `file:line: field: problem`."""

    def __init__(self, file: Path, line: int | None, field: str, message: str):
        self.problem = Problem(str(file), line, field, message)
        super().__init__(str(self.problem))


@dataclasses.dataclass
class StageOutcome:
    name: str
    stage: str
    status: str  # done | skipped
    summary: str = ""
    seconds: float = 0.0


# ---- reading the YAML, with line numbers ---------------------------------------------------

def _leading_tab_lines(text: str) -> list[int]:
    lines = []
    for number, line in enumerate(text.splitlines(), start=1):
        indent = line[: len(line) - len(line.lstrip(" \t"))]
        if "\t" in indent and line.strip():
            lines.append(number)
    return lines


def _block_scalar_lines(node: Any, out: set[int]) -> set[int]:
    """Lines inside `|` / `>` block scalars, where a tab is text, not indentation."""
    if isinstance(node, yaml.ScalarNode) and node.style in ("|", ">"):
        out.update(range(node.start_mark.line + 2, node.end_mark.line + 2))
    elif isinstance(node, yaml.MappingNode):
        for _key, value in node.value:
            _block_scalar_lines(value, out)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _block_scalar_lines(item, out)
    return out


def _key_lines(node: Any, where: tuple, out: dict[tuple, int]) -> dict[tuple, int]:
    """(path of keys and indexes) -> 1-based line, e.g. ("stages", 0, "data") -> 12."""
    out.setdefault(where, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            out[where + (key.value,)] = key.start_mark.line + 1
            _key_lines(value, where + (key.value,), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _key_lines(item, where + (i,), out)
    return out


def read_recipe_yaml(path: Path) -> tuple[dict[str, Any], dict[tuple, int]]:
    """The recipe's mapping and the line of every key; a YAML error names its line and column."""
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise RecipeError(path, text_line(exc.object, exc.start), "file", "not UTF-8") from None
    tabs = _leading_tab_lines(text)
    tab_message = "indented with a tab character; YAML indents with spaces only"
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else None
        before = [t for t in tabs if line is None or t <= line]
        if before:
            raise RecipeError(path, before[0], "YAML", tab_message) from None
        problem = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        raise RecipeError(path, line, "YAML", (f"column {mark.column + 1}: " if mark is not None else "")
                          + f"not valid YAML: {problem}" + (f" ({context})" if context else "")) from None
    inside_blocks = _block_scalar_lines(node, set()) if node is not None else set()
    tabs = [t for t in tabs if t not in inside_blocks]
    if tabs:
        raise RecipeError(path, tabs[0], "YAML", tab_message)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError(path, 1, "recipe", "the top level must be a mapping (model:, output_dir:, stages:)")
    return data, _key_lines(node, (), {}) if node is not None else {}


def text_line(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


# ---- the recipe and its stages -------------------------------------------------------------

def _resolve_path(value: Any, base: Path, key: str = "") -> Any:
    """Relative paths are relative to the recipe file; model names such as `default` stay names."""
    if isinstance(value, list):
        return [_resolve_path(v, base, key) for v in value]
    if not isinstance(value, str) or not value or Path(value).is_absolute():
        return value
    if key in MODEL_KEYS and value in DEFAULT_MODEL_ALIASES:
        return value
    return str((base / value).resolve())


def key_line(recipe: dict[str, Any], *where: Any) -> int | None:
    """The line of a key in the recipe (of the nearest enclosing key that has one)."""
    lines = recipe.get("_lines", {})
    for n in range(len(where), -1, -1):
        if tuple(where[:n]) in lines:
            return lines[tuple(where[:n])]
    return None


def line_of(recipe: dict[str, Any], *where: Any) -> str:
    """`recipe.yaml:LINE` of a key."""
    line = key_line(recipe, *where)
    return f"{recipe['_path']}:{line}" if line else str(recipe["_path"])


def stage_name(stage: dict[str, Any]) -> str:
    return str(stage.get("name", stage["stage"]))


def load_recipe(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    recipe, lines = read_recipe_yaml(path)
    recipe["_path"], recipe["_lines"] = path, lines
    unknown = sorted(set(map(str, recipe)) - RECIPE_KEYS - {"_path", "_lines"})
    if unknown:
        raise RecipeError(path, key_line(recipe, unknown[0]), "recipe",
                          f"unknown recipe key {unknown[0]!r}; known: {', '.join(sorted(RECIPE_KEYS))}")
    stages = recipe.get("stages")
    if not isinstance(stages, list) or not stages:
        raise RecipeError(path, key_line(recipe, "stages"), "stages", "must be a non-empty list")
    names = set()
    for i, stage in enumerate(stages):
        if not isinstance(stage, dict) or "stage" not in stage:
            raise RecipeError(path, key_line(recipe, "stages", i), f"stages[{i}]",
                              f"each stage needs a `stage:` key (one of {', '.join(STAGES)})")
        if stage["stage"] not in STAGES:
            raise RecipeError(path, key_line(recipe, "stages", i, "stage"), f"stages[{i}]",
                              f"stage: unknown stage {stage['stage']!r}; known: {', '.join(STAGES)}")
        name = stage_name(stage)
        if name in names:
            raise RecipeError(path, key_line(recipe, "stages", i, "name") or key_line(recipe, "stages", i),
                              f"stages[{i}]", f"name: {name!r} is used twice; give each stage a distinct `name:`")
        names.add(name)
    base = path.parent.resolve()
    recipe["_base"], recipe["_model_as_written"] = base, recipe.get("model", "default")
    recipe["model"] = _resolve_path(recipe.get("model", "default"), base, "model")
    recipe["output_dir"] = Path(_resolve_path(recipe.get("output_dir", "runs/" + path.stem), base, "output_dir"))
    return recipe


def stage_values(stage: dict[str, Any], state: dict[str, Any], config_cls: type, recipe: dict[str, Any]) -> dict[str, Any]:
    """The stage's YAML keys (paths resolved) plus what it takes from the pipeline state."""
    values = {k: _resolve_path(v, recipe["_base"], k) if k in PATH_KEYS else v
              for k, v in stage.items() if k not in ("stage", "name")}
    fields = {f.name for f in dataclasses.fields(config_cls)}
    name = stage_name(stage)
    if "output_dir" in fields and "output_dir" not in values:
        values["output_dir"] = str(recipe["output_dir"] / name)
    for field, key in INPUTS.get(stage["stage"], {}).items():
        if field in fields and field not in values and state.get(key) not in (None, []):
            values[field] = state[key]
    return values


def start_state(recipe: dict[str, Any]) -> dict[str, Any]:
    return {"model": recipe["model"], "start_model": recipe["model"], "adapter": None, "adapter_list": []}


def advance_state(state: dict[str, Any], result: dict[str, Any]) -> None:
    """What the next stage takes from this one: a new full model, or an adapter on the current one."""
    if result.get("model"):
        state.update(model=result["model"], adapter=None, adapter_list=[])
    if result.get("adapter"):
        state.update(adapter=result["adapter"], adapter_list=[result["adapter"]])


# ---- running -------------------------------------------------------------------------------

def read_state(out_dir: Path) -> dict[str, Any]:
    state_file = out_dir / "pipeline_state.json"
    return json.loads(state_file.read_text(encoding="utf-8")) if state_file.exists() else {}


def run_recipe(path: str | Path, force: bool = False, only: list[str] | None = None,
               log: Callable[[str], None] = print) -> list[StageOutcome]:
    from subjectlm.recipe_check import require_valid_recipe

    require_valid_recipe(path, log=log)  # everything a dry run finds, before an hour of training
    recipe = load_recipe(path)
    out_dir: Path = recipe["output_dir"]
    out_dir.mkdir(parents=True, exist_ok=True)
    state_file = out_dir / "pipeline_state.json"
    done = read_state(out_dir)
    state = start_state(recipe)
    outcomes = []
    for index, stage in enumerate(recipe["stages"]):
        name = stage_name(stage)
        if only and name not in only:
            advance_state(state, (done.get(name) or {}).get("result", {}))  # later stages still build on it
            continue
        config_cls, run = STAGES[stage["stage"]]()
        values = stage_values(stage, state, config_cls, recipe)
        inputs = input_fingerprints(stage["stage"], values, PATH_KEYS)
        key = stage_key(values, inputs)
        reason = why_run(done.get(name), key, inputs, force)
        if reason is None:
            result = done[name]["result"]
            log(f"[{name}] already done: {result.get('summary', '')} (inputs unchanged; --force re-runs it)")
            outcomes.append(StageOutcome(name, stage["stage"], "skipped", result.get("summary", "")))
        else:
            config = build_config(config_cls, values, source=f"{line_of(recipe, 'stages', index)}: stage {name!r}")
            log(f"[{name}] running {stage['stage']} ({reason}) ...")
            start = time.time()
            try:
                result = {k: (str(v) if isinstance(v, Path) else v) for k, v in (run(config) or {}).items()}
            except UserError:
                log(f"[{name}] failed")
                raise
            seconds = time.time() - start
            done[name] = {"hash": key, "inputs": inputs, "result": result, "config": to_dict(config),
                          "seconds": round(seconds, 1)}
            write_json(state_file, done)
            log(f"[{name}] done in {seconds:.0f}s: {result.get('summary', '')}")
            outcomes.append(StageOutcome(name, stage["stage"], "done", result.get("summary", ""), seconds))
        advance_state(state, result)
    from subjectlm.report import write_report  # one validation page over every stage's outputs

    log(f"report: {write_report(out_dir)}")
    return outcomes
