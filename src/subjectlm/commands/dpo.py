"""`subjectlm dpo`: preference alignment (DPO) with LoRA (issue #4; not landed yet)."""

from subjectlm.commands._common import pending


def add_parser(subparsers):
    return pending(subparsers, "dpo", "preference alignment (DPO) with LoRA", issue=4)
