"""`subjectlm synth`: a subject's documents -> knowledge-dense training data and a held-out exam, through
any teacher model (issue #26).

    from subjectlm.synth import SynthConfig, run
    result = run(SynthConfig(data=["docs/"], output_dir="runs/synth", teacher="http://127.0.0.1:8000/v1"))

    config.py     SynthConfig: documents, teacher, counts per output, control fraction, thresholds
    documents.py  reading .txt .md .jsonl .json .parquet .pdf into documents; their language
    chunk.py      documents -> chunks on sentence boundaries, with their section headings
    prompts.py    the teacher's prompts (pure functions; English and Chinese)
    teacher.py    the teacher: cached, concurrent, tolerant of bad replies (jsonparse.py parses JSON)
    facts.py      the grounding check: a fact's quote must be in its chunk
    generate.py   the requests of each step and what is kept of each reply
    dedup.py      near-duplicates within and across outputs; exam questions overlapping the training data
    exam.py       multiple-choice rows: letters balanced, the longest-option share
    outputs.py    facts.jsonl, pt/, sft/, dpo/, exam/, qa.jsonl, written atomically
    report.py     synth_report.json / .md
    synthesize.py the run, top to bottom
    recipe_stage.py  the recipe stage `synth`
"""

from __future__ import annotations

from typing import Any

from subjectlm.synth.config import SynthConfig

__all__ = ["SynthConfig", "run"]


def run(config: SynthConfig, teacher: Any = None) -> dict[str, Any]:
    """Run synth (see synthesize.py); heavy imports happen here, not on `import subjectlm.synth`."""
    from subjectlm.synth.synthesize import run as run_synth

    return run_synth(config, teacher)
