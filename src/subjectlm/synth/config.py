"""`subjectlm synth`'s config: which documents, which teacher, how much of each output to ask for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from subjectlm.config import DATA_FILES, MODEL, OUTPUT, ConfigError, check_options, option

# The rewrite styles, in the order a chunk's K rewrites start from (rotated per chunk, so that with
# K < 5 every style still appears across the corpus). `entities` and `relations` follow EntiGraph
# (Yang et al., ICLR 2025): explanations centred on each entity, then on pairs of entities.
REWRITE_STYLES = ("textbook", "notes", "fact_list", "entities", "relations")


@dataclass
class SynthConfig:
    data: list[str] = option([], help="documents: files or directories (.txt .md .jsonl .json .parquet .pdf); "
                                      ".txt/.md are one document per file, JSON/parquet one per record",
                              path=DATA_FILES)
    output_dir: str = option("", help="directory for facts.jsonl, pt/, sft/, dpo/, exam/, qa.jsonl and the report; "
                                      "the teacher's cache lives there too, so running again resumes", path=OUTPUT)
    teacher: str = option("", help="the teacher: an OpenAI-compatible URL (http://127.0.0.1:8000/v1), `default` "
                                   "or a local model path / .gguf (required)")
    teacher_model: Optional[str] = option(None, help="model name sent to an OpenAI-compatible teacher")
    api_key_env: Optional[str] = option(None, help="name of the environment variable holding the teacher's API "
                                                   "key (the key itself is never written anywhere)")
    concurrency: int = option(8, help="teacher requests in flight at once", min=1)
    timeout: float = option(120.0, help="seconds to wait for one teacher reply before retrying it", min=1)
    max_retries: int = option(5, help="retries of a teacher request after a 429, 5xx, timeout or dropped "
                                      "connection (exponential backoff; Retry-After honoured)", min=0)
    price_in: float = option(0.0, help="teacher price per million prompt tokens, for the report's cost", min=0)
    price_out: float = option(0.0, help="teacher price per million completion tokens, for the report's cost", min=0)
    chunk_tokens: int = option(300, help="chunk size in tokens (chunks end on sentence boundaries)", min=16)
    tokenizer: Optional[str] = option(None, help="tokenizer that counts chunk tokens: a local model dir or "
                                                 "`default` (unset: a local teacher's own; for a URL or .gguf "
                                                 "teacher, CJK characters + other characters / 4)", path=MODEL)
    facts_per_chunk: int = option(8, help="most atomic facts asked of each chunk", min=1)
    rewrites: int = option(4, help="K: rewrites of each taught chunk in pt/, each in another style "
                                   f"({', '.join(REWRITE_STYLES)})", min=0)
    sft_questions: int = option(3, help="N: questions per taught fact in sft/, each worded differently", min=1)
    multi_fact_questions: int = option(2, help="questions per taught chunk that need two or more of its facts",
                                       min=0)
    control_fraction: float = option(0.1, help="share of chunks withheld from pt/sft/dpo; their facts' questions "
                                               "form the exam's and QA's `control` category", min=0)
    dev_shots: int = option(5, help="questions per exam subject put in dev/ as few-shot examples (not in val/)",
                            min=0)
    subject: Optional[str] = option(None, help="exam subject name (default: the first data path's name)")
    jaccard: float = option(0.8, help="near-duplicate threshold (MinHash Jaccard; CJK by characters, else words)",
                            min=0)
    overlap_ngram: int = option(10, help="an exam or QA question sharing this many consecutive words (CJK: "
                                         "characters) with a training output overlaps it", min=4)
    seed: int = option(0, help="seed of the control split, letter order and option order")
    temperature: float = option(0.7, help="teacher sampling temperature", min=0)
    max_tokens: int = option(768, help="most tokens of one teacher reply", min=16)
    overwrite: bool = option(False, help="replace an output_dir that synth did not write")

    def __post_init__(self) -> None:
        check_options(self)
        if isinstance(self.data, str):
            self.data = [self.data]
        if not self.data:
            raise ConfigError("data: give the documents (files or directories)")
        if not self.output_dir:
            raise ConfigError("output_dir: required")
        if not self.teacher:
            raise ConfigError("teacher: required (an OpenAI-compatible URL, `default` or a local model path)")
        if self.control_fraction >= 1:
            raise ConfigError(f"control_fraction: must be below 1 (got {self.control_fraction}): "
                              "something has to be taught")
        if self.rewrites > len(REWRITE_STYLES):
            raise ConfigError(f"rewrites: at most {len(REWRITE_STYLES)} (one per style), got {self.rewrites}")
        if self.jaccard > 1:
            raise ConfigError(f"jaccard: must be at most 1, got {self.jaccard}")
