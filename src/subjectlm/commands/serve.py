"""`subjectlm serve`: OpenAI-compatible HTTP server (issue #7; not landed yet)."""

from subjectlm.commands._common import pending


def add_parser(subparsers):
    return pending(subparsers, "serve", "OpenAI-compatible HTTP server", issue=7)
