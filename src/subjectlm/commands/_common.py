"""Small helpers shared by the command modules."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

from subjectlm.errors import NotLandedError, UserError


def run_with_user_errors(fn: Callable[[], Any]) -> Any:
    """Turn the errors a user can fix (bad config, missing file, bad data) into UserError."""
    from subjectlm.config import ConfigError
    from subjectlm.data.errors import DataError
    from subjectlm.io import OutputExistsError
    from subjectlm.models import ModelNotFoundError

    try:
        return fn()
    except (ConfigError, DataError, OutputExistsError, ModelNotFoundError) as exc:
        raise UserError(str(exc)) from exc


def pending(subparsers: Any, name: str, help: str, issue: int) -> argparse.ArgumentParser:
    """A subcommand whose stage has not landed: visible in --help, exits 2 with a clear message."""
    parser = subparsers.add_parser(name, help=f"{help} [not implemented yet]", description=help)
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    def _run(args: argparse.Namespace) -> int:
        raise NotLandedError(f"`subjectlm {name}` is not implemented yet (issue #{issue})")

    parser.set_defaults(func=_run, pending=True)
    return parser


def print_err(*parts: Any) -> None:
    print(*parts, file=sys.stderr, flush=True)
