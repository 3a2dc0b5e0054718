"""The flags of Chinese-LLaMA-Alpaca-3's scripts/ceval/eval.py, translated before `eval exam`'s config is built.

    --few_shot False          zero-shot, whatever --ntrain/-k (= our --shots) says; -k -1: every dev row
    --do_test True            the test split (our --split test)
    --do_save_csv True        also take{K}/{subject}_test.csv (outputs.py)
    --prompt_style cla3       the old prompts and one-token letter scoring (prompts.py, scorer.py)
    --verbose                 each question printed (with --prompt_style cla3)
    --use_flash_attention_2   accepted; changes nothing here, and a note says so
    no --data                 the old layout in the working directory: data/{dev,val,test} + subject_mapping.json

`eval exam` reads its flags and YAML into `ExamFlags` (ExamConfig's keys and these); `exam_config`
takes these out as `OldScriptFlags` and builds the ExamConfig from the rest, translated.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from subjectlm.config import ConfigError, check_options, option, to_dict
from subjectlm.eval.exam.runner import ExamConfig

MAPPING = "subject_mapping.json"


@dataclasses.dataclass(kw_only=True)
class OldScriptFlags:
    few_shot: bool = option(True, help="false: zero-shot, whatever --shots/--ntrain say (the old --few_shot)")
    do_test: bool = option(False, help="answer the test split (= --split test); writes submission.json")
    do_save_csv: bool = option(False, help="also write take{K}/{subject}_test.csv: each row with model_output "
                                           "and correctness (the old script's CSVs)")
    prompt_style: str = option("default", choices=("default", "cla3"),
                               help="default: the official prompt, --with_prompt via the model's chat template; "
                                    "cla3: the old script's prompts (Llama 3 chat format, its system prompt) "
                                    "and letter scoring, to compare with numbers published with it")
    verbose: bool = option(False, help="print each question's prompt, answer and ground truth (--prompt_style cla3)")
    use_flash_attention_2: bool | None = option(None, help="accepted from the old eval.py; changes nothing here")


OLD_KEYS = tuple(f.name for f in dataclasses.fields(OldScriptFlags))


@dataclasses.dataclass(kw_only=True)
class ExamFlags(OldScriptFlags, ExamConfig):
    """What `eval exam` reads from its flags and YAML: ExamConfig's keys, then the old script's."""

    def __post_init__(self):
        check_options(self)  # types and choices; ExamConfig's own checks run on the translated config


def old_layout_dir(cwd: Path | None = None) -> str:
    """`data`, if the working directory holds the old layout (what `unzip ceval-exam.zip -d data` leaves)."""
    cwd = cwd or Path.cwd()
    if (cwd / "data" / "val").is_dir() and (cwd / "data" / "dev").is_dir() and (cwd / MAPPING).is_file():
        return str(cwd / "data")
    raise ConfigError("data: give the exam directory (--data DIR), or run where the old scripts ran: with "
                      f"data/{{dev,val,test}} and {MAPPING} in the working directory", key="data")


def translate(values: dict[str, Any], old: OldScriptFlags, cwd: Path | None = None) -> dict[str, Any]:
    """ExamConfig's keys with the old flags' meaning applied to them."""
    values = dict(values)
    if not values.get("data"):
        values["data"] = old_layout_dir(cwd)
    if old.do_test:
        if values.get("split") == "dev":
            raise ConfigError("do_test: answers the test split; drop --split dev", key="do_test")
        values["split"] = "test"
    if not old.few_shot:
        values["shots"] = 0
    if old.prompt_style == "cla3":
        if values.get("cot"):
            raise ConfigError("prompt_style: cla3 reproduces the old answer-only letter scoring; drop --cot",
                              key="prompt_style")
        if values.get("scoring", "letter") != "letter":
            raise ConfigError("prompt_style: cla3 scores letters as the old script did; it needs --scoring letter",
                              key="prompt_style")
        if values.get("backend", "auto") not in ("auto", "hf") or str(values.get("model", "")).endswith(".gguf"):
            raise ConfigError("prompt_style: cla3 reads raw logits over the whole vocabulary (the old repetition "
                              "penalty needs them): it runs on the hf backend with a model directory",
                              key="prompt_style")
    return values


def exam_config(flags: ExamFlags, cwd: Path | None = None) -> tuple[ExamConfig, OldScriptFlags]:
    """(the ExamConfig the flags mean, the old flags themselves)."""
    values = to_dict(flags)
    old = OldScriptFlags(**{key: values.pop(key) for key in OLD_KEYS})
    return ExamConfig(**translate(values, old, cwd)), old


def notes(old: OldScriptFlags) -> list[str]:
    """One line per old flag that changes nothing here."""
    lines = []
    if old.use_flash_attention_2 is not None:
        lines.append("note: --use_flash_attention_2 changes nothing here: the hf backend picks its attention "
                     "itself (shared-prefix SDPA where the model allows it)")
    if old.verbose and old.prompt_style != "cla3":
        lines.append("note: --verbose prints each question with --prompt_style cla3; here every answer is in "
                     "predictions.jsonl")
    return lines
