"""`subjectlm pt`: continued pre-training with LoRA on raw text (issue #3)."""

from __future__ import annotations

from subjectlm.commands._train import add_train_parser, run_stage
from subjectlm.train.config import PTConfig


def add_parser(subparsers):
    return add_train_parser(subparsers, "pt", "continued pre-training with LoRA on raw documents (EOS between them)",
                            PTConfig, run)


def _load():
    from subjectlm.train.pt import run

    return run


def run(args) -> int:
    return run_stage(args, PTConfig, _load)
