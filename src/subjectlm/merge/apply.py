"""Carry out a merge plan: one output shard at a time, one tensor at a time.

A tensor nothing changes is copied byte for byte (in bounded chunks). A changed one
is decoded to float32, updated in the order the adapters were given (the LoRA
product is computed as peft computes it: (B @ A) * scale, then added), and rounded
once to the output dtype. Peak memory is about one changed tensor, its update and
the LoRA factors that touch it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from subjectlm.merge.plan import MergePlan, TensorPlan
from subjectlm.merge.tensors import ShardWriter, TensorInfo, encode, read_float32


def merged_tensor(plan: TensorPlan) -> np.ndarray | TensorInfo:
    """The output tensor: a stored tensor to copy as is, or an array in the output dtype."""
    start, ops = plan.source, plan.ops
    if ops and ops[-1].kind == "replace":
        start, ops = ops[-1].b, []
    elif any(op.kind == "replace" for op in ops):
        last = max(i for i, op in enumerate(ops) if op.kind == "replace")
        start, ops = ops[last].b, ops[last + 1:]
    if not ops and start.dtype == plan.dtype:
        return start
    weight = read_float32(start)
    if not weight.flags.writeable:
        weight = weight.copy()
    for op in ops:
        if op.kind == "lora":
            delta = read_float32(op.b) @ read_float32(op.a)
            if op.transpose:
                delta = delta.T
            delta *= np.float32(op.scale)
        else:  # "add": a lora_B bias
            delta = read_float32(op.b) * np.float32(op.scale)
        weight += delta
        del delta
    return encode(weight, plan.dtype)


def write_shard(plan: MergePlan, shard: str, out_dir: Path) -> dict[str, int]:
    """Write one merged shard; returns tensor name -> bytes written."""
    tensors = {t.name: t for t in plan.shard_tensors(shard)}
    metadata = dict(plan.base.metadata.get(shard) or {})
    metadata.setdefault("format", "pt")
    with ShardWriter(out_dir / shard, [(t.name, t.dtype, t.shape) for t in tensors.values()], metadata) as writer:
        for name in writer.names:
            writer.write(name, merged_tensor(tensors[name]))
    return {name: size for name, size in writer.order}


def write_weights(plan: MergePlan, out_dir: Path, on_shard: Callable[[str], None] = lambda shard: None) -> dict[str, str]:
    """Write every shard (and the index when the base had one); returns the weight map."""
    import json

    weight_map: dict[str, str] = {}
    total = 0
    for shard in plan.base.shards:
        sizes = write_shard(plan, shard, out_dir)
        weight_map.update({name: shard for name in sizes})
        total += sum(sizes.values())
        on_shard(shard)
    if plan.base.sharded:
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        (out_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    return weight_map
