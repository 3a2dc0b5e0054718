"""`subjectlm pt`: continued pre-training with LoRA on raw subject text (issue #3; not landed yet)."""

from subjectlm.commands._common import pending


def add_parser(subparsers):
    return pending(subparsers, "pt", "continued pre-training with LoRA on raw subject text", issue=3)
