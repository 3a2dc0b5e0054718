"""`subjectlm serve`: an OpenAI-compatible HTTP server (chat and completions, streaming)."""

from __future__ import annotations

import argparse

from subjectlm.config import add_config_arguments, config_from_args


def add_parser(subparsers) -> argparse.ArgumentParser:
    from subjectlm.serve.server import ServeConfig

    parser = subparsers.add_parser("serve", help="serve a model over an OpenAI-compatible HTTP API",
                                   description="OpenAI-compatible /v1/models, /v1/chat/completions, /v1/completions. "
                                               "Binds 127.0.0.1 unless --host says otherwise.")
    add_config_arguments(parser, ServeConfig)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from subjectlm.serve.server import ServeConfig, serve

    serve(config_from_args(ServeConfig, args))
    return 0
