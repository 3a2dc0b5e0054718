"""`subjectlm data check`: validate training data and report on it."""

from subjectlm.commands._common import pending


def add_parser(subparsers):
    return pending(subparsers, "data", "validate and inspect training data", issue=2)
