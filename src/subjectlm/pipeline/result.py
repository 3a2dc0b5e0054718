"""What a stage hands on to the stages after it: a model, an adapter, and any number of named data sets.

A stage's run function returns a `StageResult`, or (older stages) a dict with `model`, `adapter`,
`summary` and anything else; `StageResult.of` reads either. A later stage takes a named output with
`data: {from: STAGE_NAME, output: OUTPUT_NAME}` in the recipe (OUTPUT_NAME: `model`, `adapter` or a
data set's name). Stage modules import this file; it imports nothing of subjectlm.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

DATASET_KINDS = ("pt", "sft", "dpo", "exam", "qa", "prompts", "text")


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A data set a stage wrote: a file or folder, and what reads it (`pt` text, an `exam` folder, ...)."""

    path: Path
    kind: str

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))
        if self.kind not in DATASET_KINDS:
            raise ValueError(f"Dataset kind {self.kind!r} is not one of {', '.join(DATASET_KINDS)}")


@dataclasses.dataclass
class StageResult:
    """One line for the log, the outputs later stages may take, and anything else the stage reports (`extra`:
    kept in pipeline_state.json beside them, where the report reads it)."""

    summary: str = ""
    model: Path | None = None
    adapter: Path | None = None
    datasets: dict[str, Dataset] = dataclasses.field(default_factory=dict)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def outputs(self) -> dict[str, Path]:
        """Output name -> path, for `{from: STAGE, output: NAME}`."""
        named = {"model": self.model, "adapter": self.adapter}
        return {k: Path(v) for k, v in named.items() if v} | {k: d.path for k, d in self.datasets.items()}

    def to_json(self) -> dict[str, Any]:
        """As pipeline_state.json keeps it: the legacy dict's keys (`model`, `adapter`, `summary`, the extra
        keys at the top), with `datasets` as {name: {path, kind}}."""
        out = {k: (str(v) if isinstance(v, Path) else v) for k, v in self.extra.items()}
        out["summary"] = self.summary
        out.update({k: str(v) for k, v in (("model", self.model), ("adapter", self.adapter)) if v})
        if self.datasets:
            out["datasets"] = {k: {"path": str(d.path), "kind": d.kind} for k, d in self.datasets.items()}
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> StageResult:
        """A result as `to_json` wrote it, or the dict a stage returned (Paths allowed)."""
        data = dict(data or {})
        datasets = data.pop("datasets", None) or {}
        model, adapter = data.pop("model", None), data.pop("adapter", None)
        return cls(summary=str(data.pop("summary", "") or ""), model=Path(model) if model else None,
                   adapter=Path(adapter) if adapter else None,
                   datasets={k: d if isinstance(d, Dataset) else Dataset(Path(d["path"]), d["kind"])
                             for k, d in datasets.items()},
                   extra={k: (str(v) if isinstance(v, Path) else v) for k, v in data.items()})

    @classmethod
    def of(cls, returned: StageResult | dict[str, Any] | None) -> StageResult:
        """What a run function returned, either way."""
        return returned if isinstance(returned, StageResult) else cls.from_json(returned)
