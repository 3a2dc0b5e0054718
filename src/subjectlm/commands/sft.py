"""`subjectlm sft`: instruction tuning with LoRA; loss on assistant tokens only (issue #3)."""

from __future__ import annotations

from subjectlm.commands._train import add_train_parser, run_stage
from subjectlm.train.config import SFTConfig


def add_parser(subparsers):
    return add_train_parser(subparsers, "sft", "instruction tuning with LoRA (answer-only loss, packed batches)",
                            SFTConfig, run)


def _load():
    from subjectlm.train.sft import run

    return run


def run(args) -> int:
    return run_stage(args, SFTConfig, _load)
