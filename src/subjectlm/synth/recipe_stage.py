"""The recipe stage `synth`: documents in, named data sets out (`pt`, `sft`, `dpo`, `exam`, `qa`).

Later stages take them with `data: {from: synth, output: pt}` (see examples/synth.yaml). The stage's
keys are `subjectlm synth`'s own (SynthConfig); the pipeline fills in `output_dir`. Running the recipe
again resumes: every teacher reply is in the cache in the stage's folder.
"""

from __future__ import annotations

from pathlib import Path

from subjectlm.pipeline.result import Dataset, StageResult
from subjectlm.synth.config import SynthConfig

# Output name -> (path inside output_dir, kind of data set).
OUTPUTS = {"pt": ("pt", "pt"), "sft": ("sft", "sft"), "dpo": ("dpo", "dpo"), "exam": ("exam", "exam"),
           "qa": ("qa.jsonl", "qa")}


def planned_outputs(config: SynthConfig) -> StageResult:
    """What the stage will hand on, before it runs (the dry run checks later stages against it)."""
    out = Path(config.output_dir)
    return StageResult(datasets={name: Dataset(out / path, kind) for name, (path, kind) in OUTPUTS.items()})


def run(config: SynthConfig) -> StageResult:
    from subjectlm.synth.synthesize import run as run_synth

    result = run_synth(config)
    planned = planned_outputs(config)
    return StageResult(summary=result["summary"], datasets=planned.datasets,
                       extra={"report": str(Path(config.output_dir) / "synth_report.md"),
                              "split": result["report"]["split"]})
