"""The pipeline's state: what each stage takes from the stages before it, and what the finished ones recorded.

`PipelineState` walks along the recipe: the current model (a new full model from merge or full
fine-tuning), the adapter trained on it (sft/dpo continue it, merge merges it), the starting model
(eval and arena compare against it), every data path trained on so far (`training_data`) and each
stage's named outputs (for `{from: STAGE, output: NAME}`).

`pipeline_state.json` in the recipe's output folder keeps one `StageRecord` per finished stage:

    {"pt": {"kind": "pt", "hash": ..., "inputs": {...}, "result": {...}, "config": {...}, "seconds": 12.5}, ...}

Files written before `kind` was recorded are read as they are (kind None).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from subjectlm.io import write_json
from subjectlm.pipeline.result import StageResult

STATE_FILE = "pipeline_state.json"


@dataclasses.dataclass
class PipelineState:
    model: str
    start_model: str
    adapter: str | None = None
    adapter_list: list[str] = dataclasses.field(default_factory=list)
    training_data: list[str] = dataclasses.field(default_factory=list)
    # stage name -> its named outputs; None when they cannot be known (its config has errors)
    results: dict[str, StageResult | None] = dataclasses.field(default_factory=dict)

    @classmethod
    def start(cls, model: str) -> PipelineState:
        return cls(model=model, start_model=model)

    def advance(self, name: str, result: StageResult | None, trained_on: list[str]) -> None:
        """After a stage (run, skipped, or left out by --only): a new full model, or an adapter on the
        current one; the data it trained on; its outputs for later `from:` references (result None:
        it hands nothing on, having never run)."""
        self.training_data += [p for p in trained_on if p not in self.training_data]
        if result is None:
            return
        if result.model:
            self.model, self.adapter, self.adapter_list = str(result.model), None, []
        if result.adapter:
            self.adapter, self.adapter_list = str(result.adapter), [str(result.adapter)]
        self.results[name] = result


@dataclasses.dataclass
class StageRecord:
    """A finished stage, as pipeline_state.json keeps it."""

    kind: str | None           # the stage kind (pt, sft, ...); None in files written before it was recorded
    hash: str                  # its freshness key (pipeline/freshness.py)
    inputs: dict[str, Any]     # the fingerprint of each path it read
    result: StageResult
    config: dict[str, Any]     # its config as built
    seconds: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "hash": self.hash, "inputs": self.inputs, "result": self.result.to_json(),
                "config": self.config, "seconds": self.seconds}

    @classmethod
    def from_json(cls, entry: dict[str, Any]) -> StageRecord:
        result = entry.get("result")
        return cls(kind=entry.get("kind"), hash=str(entry.get("hash", "")), inputs=entry.get("inputs") or {},
                   result=StageResult.from_json(result if isinstance(result, dict) else {}),
                   config=entry.get("config") or {}, seconds=entry.get("seconds"))


def read_records(out_dir: Path) -> dict[str, StageRecord]:
    """Stage name -> its record (an entry that is not a mapping is left out: that stage counts as not run)."""
    state_file = out_dir / STATE_FILE
    data = json.loads(state_file.read_text(encoding="utf-8")) if state_file.exists() else {}
    return {name: StageRecord.from_json(entry) for name, entry in data.items() if isinstance(entry, dict)}


def write_records(out_dir: Path, records: dict[str, StageRecord]) -> None:
    write_json(out_dir / STATE_FILE, {name: record.to_json() for name, record in records.items()})
