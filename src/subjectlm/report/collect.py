"""What a recipe run left behind: its stages (from pipeline_state.json) and the files each one wrote.

The recipe records, per stage name, its kind (pt, sft, merge, ...), the resolved config, the result
and the seconds taken; the report groups pt, sft and dpo as `train`. A state file written before the
kind was recorded has it read from the config's fields (a training config has `learning_rate`, an
export config `quantize`, ...). Either way stages renamed in the recipe (`name: sft-round-2`) are found.
Nothing here fails on a missing or unreadable file: the report says what it could not find.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from subjectlm.io import read_jsonl as io_read_jsonl

STATE_FILE = "pipeline_state.json"

# recorded stage kind -> the report's kind, where they differ
REPORT_KINDS = {"pt": "train", "sft": "train", "dpo": "train"}
# For state files without `kind`: stage kind -> config fields that only that kind's config has (the first
# kind whose fields all match wins)
KIND_FIELDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("train", ("learning_rate",)),     # pt, sft, dpo (train/config.py)
    ("merge", ("base", "lora")),       # merge/config.py
    ("arena", ("prompts",)),           # arena/recipe_stage.py
    ("export", ("quantize", "outtype")),  # export/job.py
    ("eval", ("data", "base_model")),  # eval/recipe_stage.py
)


@dataclasses.dataclass
class Stage:
    name: str
    kind: str                # train | merge | eval | export | arena | another recorded kind | other
    config: dict[str, Any]
    summary: str
    result: dict[str, Any]   # what the stage's run() returned (the recipe keeps it)
    seconds: float | None
    dir: Path | None         # the stage's output folder, when it has one and it exists


def read_json(path: Path) -> Any:
    """The parsed file, or None when it is missing or not valid JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """A stage's JSON-lines file (missing: no rows). io.read_jsonl drops a torn last line with a warning
    and names file:line of a bad row anywhere else, rather than skipping it silently."""
    return [row for row in io_read_jsonl(path, missing_ok=True) if isinstance(row, dict)]


def stage_kind(entry: dict[str, Any]) -> str:
    """The report's kind of a pipeline_state.json entry: its recorded kind, else guessed from its config."""
    recorded = entry.get("kind")
    if isinstance(recorded, str) and recorded:
        return REPORT_KINDS.get(recorded, recorded)
    config = entry.get("config") if isinstance(entry.get("config"), dict) else {}
    for kind, fields in KIND_FIELDS:
        if all(f in config for f in fields):
            return kind
    return "other"


def load_stages(run_dir: Path) -> list[Stage]:
    """The stages recorded in run_dir/pipeline_state.json, in the order they were first run."""
    state = read_json(run_dir / STATE_FILE)
    if not isinstance(state, dict):
        return []
    stages = []
    for name, entry in state.items():
        if not isinstance(entry, dict):
            continue
        config = entry.get("config") if isinstance(entry.get("config"), dict) else {}
        result = entry.get("result") if isinstance(entry.get("result"), dict) else {}
        out = config.get("output_dir")
        folder = Path(out) if isinstance(out, str) and out else run_dir / name
        stages.append(Stage(name=name, kind=stage_kind(entry), config=config, summary=str(result.get("summary", "")),
                            result=result, seconds=entry.get("seconds"), dir=folder if folder.is_dir() else None))
    return stages
