"""`subjectlm dpo`: preference alignment with LoRA on TRL's DPOTrainer (issue #4)."""

from __future__ import annotations

from subjectlm.commands._train import add_train_parser, run_stage
from subjectlm.train.config import DPOConfig


def add_parser(subparsers):
    return add_train_parser(subparsers, "dpo", "preference alignment (DPO) with LoRA; the reference is the base "
                            "with the adapter off", DPOConfig, run)


def _load():
    from subjectlm.train.dpo import run

    return run


def run(args) -> int:
    return run_stage(args, DPOConfig, _load)
