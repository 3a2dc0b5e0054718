"""What `subjectlm pt`, `sft` and `dpo` share: flags from the stage's config dataclass, one run call.

It lives with the commands (not in train/) so the training library never imports CLI code."""

from __future__ import annotations

import argparse
import textwrap
from typing import Any, Callable

from subjectlm.config import add_config_arguments, config_from_args
from subjectlm.data.mix import WEIGHTS_HELP

DISTRIBUTED = ("Distributed: the same command runs under `torchrun --nproc_per_node N -m subjectlm ...` or "
               "`accelerate launch [--config_file fsdp_or_deepspeed.yaml] -m subjectlm ...`.")


def add_train_parser(subparsers: Any, name: str, help: str, config_cls: type, func: Callable) -> argparse.ArgumentParser:
    # Raw layout keeps the weighted-sources text's lines (the description is wrapped here instead).
    parser = subparsers.add_parser(name, help=help, description=textwrap.fill(f"{help}. {DISTRIBUTED}", 100),
                                   epilog=WEIGHTS_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser, config_cls)
    parser.set_defaults(func=func)
    return parser


def run_stage(args: argparse.Namespace, config_cls: type, load_run: Callable[[], Callable]) -> int:
    result = load_run()(config_from_args(config_cls, args))
    print(result.get("summary", ""))
    where = result.get("adapter") or result.get("model")
    if where:
        print(f"saved to {where}")
    return 0
