"""Errors a user can act on. The CLI prints their message (no traceback) and exits non-zero."""

from __future__ import annotations


class UserError(Exception):
    exit_code = 1


class NotLandedError(UserError):
    """A stage whose issue has not landed yet."""

    exit_code = 2
