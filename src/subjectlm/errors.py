"""Errors a user can act on. `subjectlm` (cli.py) catches `UserError` once, prints `error: <message>`
with no traceback and exits with `exit_code` (2). Each stage's own error class subclasses it."""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix: a bad flag or config key, a missing file, bad data, an existing output."""

    exit_code = 2
