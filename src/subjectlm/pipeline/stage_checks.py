"""What `run --dry-run` checks in one stage, each finding at its recipe line: its keys against the config
dataclass (a typo gets a suggestion), the config built from its values (types, allowed values, required
keys, the config's own checks), and every path it names (missing: error; a relative path climbing out of
the recipe's folder: warning; a model path must hold a model; outputs may go anywhere)."""

from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path
from typing import Any

from subjectlm.config import ConfigError, PathRole, build_config
from subjectlm.data.errors import Problem
from subjectlm.models import DEFAULT_MODEL_ALIASES
from subjectlm.pipeline.recipe import Recipe, Stage, resolve_path
from subjectlm.pipeline.values import paths_in


def _names(config_cls: type) -> set[str]:
    """Field names and flag aliases: the keys build_config accepts."""
    fields = dataclasses.fields(config_cls)
    return {f.name for f in fields} | {a.lstrip("-") for f in fields for a in f.metadata.get("aliases", ())}


def key_problems(recipe: Recipe, stage: Stage, config_cls: type) -> list[Problem]:
    fields = [f.name for f in dataclasses.fields(config_cls)]
    found = []
    for key in stage.config:
        if key in _names(config_cls):
            continue
        close = difflib.get_close_matches(str(key), fields, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(sorted(fields))}"
        found.append(Problem(str(recipe.path), recipe.line("stages", stage.index, key), f"stage {stage.name}",
                             f"{key}: unknown key for {config_cls.__name__}{hint}"))
    return found


def built_config(recipe: Recipe, stage: Stage, config_cls: type, values: dict[str, Any]) -> tuple[Any, list[Problem]]:
    """The stage's config, or None and what building it found, at the line of the key it is about."""
    names = _names(config_cls)
    try:
        return build_config(config_cls, {k: v for k, v in values.items() if k in names}, source=""), []
    except ConfigError as exc:
        message = str(exc).removeprefix(": ")
        where = ("stages", stage.index, exc.key) if exc.key in stage.config else ("stages", stage.index)
        return None, [Problem(str(recipe.path), recipe.line(*where), f"stage {stage.name}", message)]


def path_problems(recipe: Recipe, where: tuple, field: str, key: str, role: PathRole, raw: Any) -> list[Problem]:
    """Every path a key names as written: it must exist (unless the stage writes it) and should stay in the
    recipe's folder; a model path must hold a model."""
    found = []
    line = recipe.line(*where)
    for written in paths_in(raw):
        if role.model and written in DEFAULT_MODEL_ALIASES:
            continue
        resolved = resolve_path(written, recipe.base, role.model)
        if not Path(written).is_absolute() and not Path(resolved).is_relative_to(recipe.base):
            found.append(Problem(str(recipe.path), line, field, f"{key}: {written} is outside the recipe's folder "
                                 f"({recipe.base}); the recipe breaks when its folder is copied or moved", warning=True))
        if not role.writes and not Path(resolved).exists():
            found.append(Problem(str(recipe.path), line, field, f"{key}: {written} does not exist ({resolved})"))
        elif role.model and Path(resolved).is_dir() and not (Path(resolved) / "config.json").is_file():
            found.append(Problem(str(recipe.path), line, field, f"{key}: {written} is not a model directory (no config.json)"))
    return found
