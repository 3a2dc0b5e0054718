"""`subjectlm chat`: interactive chat with a model (issue #7; not landed yet)."""

from subjectlm.commands._common import pending


def add_parser(subparsers):
    return pending(subparsers, "chat", "interactive chat with a model", issue=7)
