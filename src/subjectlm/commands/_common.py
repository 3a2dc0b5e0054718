"""Small helpers shared by the command modules. User errors need no wrapper here: every one
subclasses `subjectlm.errors.UserError` and cli.py turns it into one `error:` line."""

from __future__ import annotations

import sys
from typing import Any


def print_err(*parts: Any) -> None:
    print(*parts, file=sys.stderr, flush=True)
