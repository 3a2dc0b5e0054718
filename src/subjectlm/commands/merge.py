"""`subjectlm merge`: merge LoRA adapters into full safetensors weights, shard by shard (issue #5; not landed yet)."""

from subjectlm.commands._common import pending


def add_parser(subparsers):
    return pending(subparsers, "merge", "merge LoRA adapters into full safetensors weights, shard by shard", issue=5)
