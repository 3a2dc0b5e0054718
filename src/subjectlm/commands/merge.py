"""`subjectlm merge`: merge LoRA adapters into full safetensors weights, shard by shard (issue #5)."""

from __future__ import annotations

import argparse

EPILOG = """examples:
  subjectlm merge --base default --lora runs/sft/adapter --output_dir runs/merged
  subjectlm merge --base_model M --lora_model pt_lora sft_lora --output_dir D --dtype bf16 --verify
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    from subjectlm.config import add_config_arguments
    from subjectlm.merge.config import MergeConfig

    parser = subparsers.add_parser(
        "merge", help="merge LoRA adapters into full safetensors weights, shard by shard",
        description="Merge one or more LoRA adapters (in order) into a base model, reading one shard at a time. "
                    "Refuses pickles, mismatched bases and unsupported adapter options before writing anything.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter, conflict_handler="resolve",
    )
    add_config_arguments(parser, MergeConfig)
    # Repeatable: `--lora A --lora B` and `--lora A B` both merge A then B.
    parser.add_argument("--lora", "--lora_model", dest="lora", action="extend", nargs="+", metavar="ADAPTER",
                        default=argparse.SUPPRESS, help="LoRA adapter directory; repeat or list several to merge them in order")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from subjectlm.config import config_from_args
    from subjectlm.merge import MergeConfig, run as merge

    result = merge(config_from_args(MergeConfig, args))
    print(result["summary"])
    print(result["model"])
    return 0
