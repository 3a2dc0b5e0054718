"""A recipe as typed objects: `Recipe` (starting model, output folder, stages) and `Stage` (kind, name,
its keys as written, their lines).

    model: default            # where the pipeline starts
    output_dir: runs/demo     # each stage writes to output_dir/<stage name>
    stages:
      - stage: pt             # a kind of the stage table (pipeline/stages.py)
        data: data/corpus.txt # any key of that kind's config dataclass
      - stage: sft
        name: sft-round-1     # optional; default: the kind
        data: {from: synth, output: sft}   # a named output of an earlier stage

Paths are relative to the recipe file.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from subjectlm.models import DEFAULT_MODEL_ALIASES
from subjectlm.pipeline.recipe_yaml import RecipeError, read_recipe_yaml
from subjectlm.pipeline.stages import STAGE_KINDS

RECIPE_KEYS = {"model", "output_dir", "stages", "description"}


@dataclasses.dataclass
class Stage:
    index: int                 # its place in the recipe's stage list
    kind: str                  # `stage:` (pt, sft, ...)
    name: str                  # `name:`, or the kind
    config: dict[str, Any]     # its other keys, as written (paths not yet resolved)


@dataclasses.dataclass
class Recipe:
    path: Path
    base: Path                 # the recipe's folder: relative paths are relative to it
    model: str                 # the starting model: a resolved path, or a name such as `default`
    model_as_written: str
    output_dir: Path
    stages: list[Stage]
    lines: dict[tuple, int]    # ("stages", 0, "data") -> its line
    description: str = ""

    def line(self, *where: Any) -> int | None:
        """The line of a key (of the nearest enclosing key that has one)."""
        for n in range(len(where), -1, -1):
            if tuple(where[:n]) in self.lines:
                return self.lines[tuple(where[:n])]
        return None

    def where(self, *where: Any) -> str:
        """`recipe.yaml:LINE` of a key."""
        line = self.line(*where)
        return f"{self.path}:{line}" if line else str(self.path)


def resolve_path(value: str, base: Path, model: bool = False) -> str:
    """A path as written, made absolute against the recipe's folder; model names such as `default` stay names."""
    if not value or Path(value).is_absolute() or (model and value in DEFAULT_MODEL_ALIASES):
        return value
    return str((base / value).resolve())


def load_recipe(path: str | Path) -> Recipe:
    """The recipe's top-level keys and stage list, checked; a RecipeError names the line."""
    path = Path(path)
    data, lines = read_recipe_yaml(path)

    def fail(where: tuple, field: str, message: str) -> RecipeError:
        line = next((lines[where[:n]] for n in range(len(where), -1, -1) if where[:n] in lines), None)
        return RecipeError(path, line, field, message)

    unknown = sorted(set(map(str, data)) - RECIPE_KEYS)
    if unknown:
        raise fail((unknown[0],), "recipe", f"unknown recipe key {unknown[0]!r}; known: {', '.join(sorted(RECIPE_KEYS))}")
    entries = data.get("stages")
    if not isinstance(entries, list) or not entries:
        raise fail(("stages",), "stages", "must be a non-empty list")
    stages: list[Stage] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or "stage" not in entry:
            raise fail(("stages", i), f"stages[{i}]", f"each stage needs a `stage:` key (one of {', '.join(STAGE_KINDS)})")
        if entry["stage"] not in STAGE_KINDS:
            raise fail(("stages", i, "stage"), f"stages[{i}]",
                       f"stage: unknown stage {entry['stage']!r}; known: {', '.join(STAGE_KINDS)}")
        name = str(entry.get("name", entry["stage"]))
        if any(s.name == name for s in stages):
            raise fail(("stages", i, "name") if "name" in entry else ("stages", i), f"stages[{i}]",
                       f"name: {name!r} is used twice; give each stage a distinct `name:`")
        stages.append(Stage(i, entry["stage"], name, {k: v for k, v in entry.items() if k not in ("stage", "name")}))
    base = path.parent.resolve()
    model = str(data.get("model", "default"))
    output_dir = str(data.get("output_dir", "runs/" + path.stem))
    return Recipe(path=path, base=base, model=resolve_path(model, base, model=True), model_as_written=model,
                  output_dir=Path(resolve_path(output_dir, base)), stages=stages, lines=lines,
                  description=str(data.get("description", "") or ""))
