"""`subjectlm` command line: parse, dispatch to one plain function, return an exit code.

Each subcommand lives in `subjectlm/commands/<name>.py` with two functions:
`add_parser(subparsers)` (light: no torch import) and `run(args) -> int`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from subjectlm import __version__
from subjectlm.commands import chat, data, dpo, eval, export, merge, model, pt, recipe, serve, sft, synth
from subjectlm.errors import UserError

# Order is the order of `subjectlm --help`: a pipeline read top to bottom.
COMMANDS = {
    "model": model,
    "data": data,
    "synth": synth,
    "pt": pt,
    "sft": sft,
    "dpo": dpo,
    "merge": merge,
    "eval": eval,
    "export": export,
    "chat": chat,
    "serve": serve,
    "run": recipe,
}

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="subjectlm",
        description="Turn an open LLM into a validated subject expert, and ship it.",
    )
    parser.add_argument("--version", action="version", version=f"subjectlm {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS.values():
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand. The one place user errors are caught: every error a user can fix
    subclasses `UserError` (config, data, model, exam, merge, export, ...) and becomes a single
    `error: ...` line on stderr and exit status 2; anything else is a bug and keeps its traceback."""
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
