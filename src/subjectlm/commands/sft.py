"""`subjectlm sft`: instruction tuning with LoRA (answer-only loss) (issue #3; not landed yet)."""

from subjectlm.commands._common import pending


def add_parser(subparsers):
    return pending(subparsers, "sft", "instruction tuning with LoRA (answer-only loss)", issue=3)
