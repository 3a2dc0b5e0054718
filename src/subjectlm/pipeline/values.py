"""A stage's config values, as the pipeline builds them before the config dataclass is made.

    1. its keys as written; in each path field (`option(path=...)`) relative paths are made absolute
       against the recipe's folder: a string, each item of a list, the `path` of a `{path:, weight:}` item;
    2. each `{from: STAGE, output: NAME}` replaced by that earlier stage's output path: a bare reference
       becomes the path string, one with other keys (`weight`) becomes `{path: ..., weight: ...}`;
    3. `output_dir` (output_dir/<stage name>) and what the stage kind takes from the pipeline state
       (the stage table's `inputs`), for the fields the recipe leaves out.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Callable

from subjectlm.config import PathRole, path_roles
from subjectlm.pipeline.recipe import Recipe, Stage, resolve_path
from subjectlm.pipeline.stages import StageKind
from subjectlm.pipeline.state import PipelineState

_WEIGHT_SUFFIX = re.compile(r"@[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?$")  # `PATH@W` (data/mix.py)

# (where in the recipe, message) -> nothing; called once per problem found
Fail = Callable[[tuple, str], None]


def is_reference(value: Any) -> bool:
    return isinstance(value, dict) and "from" in value


def _resolve_one(value: str, base: Path, role: PathRole) -> str:
    weight = _WEIGHT_SUFFIX.search(value)
    if weight and not (base / value).exists():  # `corpus.txt@0.2`: the weight stays after the resolved path
        return resolve_path(value[: weight.start()], base, role.model) + weight.group()
    return resolve_path(value, base, role.model)


def resolve_paths(value: Any, base: Path, role: PathRole) -> Any:
    """Relative paths in a path field's value made absolute against `base` (references left as they are)."""
    if isinstance(value, str):
        return _resolve_one(value, base, role)
    if isinstance(value, list):
        return [resolve_paths(v, base, role) for v in value]
    if isinstance(value, dict) and not is_reference(value) and isinstance(value.get("path"), str):
        return {**value, "path": _resolve_one(value["path"], base, role)}
    return value


def paths_in(value: Any) -> list[str]:
    """Every path a field's value names (weights dropped; references, not yet resolved, left out)."""
    if isinstance(value, str):
        weight = _WEIGHT_SUFFIX.search(value)
        return [value[: weight.start()] if weight and not Path(value).exists() else value] if value else []
    if isinstance(value, list):
        return [p for v in value for p in paths_in(v)]
    if isinstance(value, dict) and not is_reference(value) and isinstance(value.get("path"), str):
        return [value["path"]]
    return []


class BadReference(ValueError):
    def __init__(self, key: str, message: str):  # key: `from` or `output`, the line the problem is on
        super().__init__(f"{key}: {message}")
        self.key = key


def _reference_path(ref: dict[str, Any], stage: Stage, recipe: Recipe, state: PipelineState) -> str:
    """The path `{from: NAME, output: OUTPUT}` names; a BadReference says what is wrong with it."""
    source, output = ref.get("from"), ref.get("output")
    names = [s.name for s in recipe.stages]
    earlier = names[: stage.index]
    if not isinstance(source, str) or source not in names:
        raise BadReference("from", f"no stage named {source!r} in the recipe; earlier stages: {', '.join(earlier) or 'none'}")
    if source not in earlier:
        raise BadReference("from", f"stage {source!r} comes after this one; only an earlier stage's outputs can be read")
    if not isinstance(output, str) or not output:
        raise BadReference("output", f"required with `from: {source}` (model, adapter or one of its data sets)")
    if source not in state.results:
        raise BadReference("from", f"stage {source!r} has never run and is not selected (--only): its outputs do not exist")
    result = state.results[source]
    if result is None:
        return f"<{source}.{output}>"  # its own config has errors, reported there
    outputs = result.outputs()
    if output not in outputs:
        raise BadReference("output", f"stage {source!r} has no output {output!r}; it hands on: "
                         f"{', '.join(outputs) or 'nothing'}")
    return str(outputs[output])


def substitute_references(value: Any, where: tuple, stage: Stage, recipe: Recipe, state: PipelineState,
                          fail: Fail) -> Any:
    if isinstance(value, list):
        return [substitute_references(v, where + (i,), stage, recipe, state, fail) for i, v in enumerate(value)]
    if not is_reference(value):
        return value
    try:
        path = _reference_path(value, stage, recipe, state)
    except BadReference as exc:
        fail(where + (exc.key,), f"{where[2]}: {exc}")
        return f"<{value.get('from')}.{value.get('output')}>"
    rest = {k: v for k, v in value.items() if k not in ("from", "output")}
    return {"path": path, **rest} if rest else path


def stage_values(recipe: Recipe, stage: Stage, kind: StageKind, state: PipelineState, fail: Fail) -> dict[str, Any]:
    """The mapping the stage's config is built from (see the module docstring)."""
    config_cls = kind.config_class()
    roles = path_roles(config_cls)
    values = {}
    for key, raw in stage.config.items():
        value = resolve_paths(raw, recipe.base, roles[key]) if key in roles else raw
        values[key] = substitute_references(value, ("stages", stage.index, key), stage, recipe, state, fail)
    fields = dataclasses.fields(config_cls)
    by_alias = {a.lstrip("-"): f.name for f in fields for a in f.metadata.get("aliases", ())}
    given = {by_alias.get(k, k) for k in values}
    names = {f.name for f in fields}
    if "output_dir" in names and "output_dir" not in given:
        values["output_dir"] = str(recipe.output_dir / stage.name)
    for field, attribute in kind.inputs.items():
        value = getattr(state, attribute)
        if field in names and field not in given and value not in (None, []):
            values[field] = list(value) if isinstance(value, list) else value
    return values


def trained_on(values: dict[str, Any], config_cls: type) -> list[str]:
    """The data paths a stage trains on (its fields whose role `trains`), as the pipeline's `training_data`."""
    roles = path_roles(config_cls)
    return [p for key, value in values.items() if key in roles and roles[key].trains for p in paths_in(value)]
