"""`subjectlm chat`: multi-turn chat in the terminal (streaming), or one `--prompt`."""

from __future__ import annotations

import argparse

from subjectlm.config import add_config_arguments, config_from_args


def add_parser(subparsers) -> argparse.ArgumentParser:
    from subjectlm.serve.chat import ChatConfig

    parser = subparsers.add_parser("chat", help="chat with a model (HF dir or GGUF) in the terminal",
                                   description="Multi-turn chat, streamed. /reset forgets, /exit leaves. "
                                               "--prompt answers one message and exits.")
    add_config_arguments(parser, ChatConfig)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from subjectlm.serve.chat import ChatConfig, run as chat

    return chat(config_from_args(ChatConfig, args))
