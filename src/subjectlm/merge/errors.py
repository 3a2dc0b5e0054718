"""The merge's user-facing error: the CLI prints its message without a traceback."""

from subjectlm.errors import UserError


class MergeError(UserError):
    """A base/adapter combination or option that cannot be merged exactly; says which and why."""
