"""Reading a recipe's YAML with the line of every key, so that each finding can say `recipe.yaml:LINE`.

A syntax error names its line and column; a tab in the indentation (outside `|`/`>` text) names its line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from subjectlm.config import ConfigError
from subjectlm.data.errors import Problem


class RecipeError(ConfigError):
    """A recipe that cannot be read (its YAML, its stage list), pinned to `file:line: field: problem`."""

    def __init__(self, file: Path, line: int | None, field: str, message: str):
        self.problem = Problem(str(file), line, field, message)
        super().__init__(str(self.problem), key=field)


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
