"""Carry out a merge plan: one output shard at a time, one tensor at a time, in row blocks.

A tensor nothing changes is copied byte for byte (in bounded chunks). A changed one
is streamed in blocks of rows: each block is decoded to float32, updated in the
order the adapters were given (the LoRA product as peft computes it, (B @ A) * scale,
restricted to the block's rows), rounded once to the output dtype and written. Peak
memory is one block plus the LoRA factors of the tensor, whatever the model size.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from subjectlm.merge.adapter import Op
from subjectlm.merge.plan import MergePlan, TensorPlan
from subjectlm.merge.tensors import ShardWriter, TensorInfo, encode, read_float32, read_rows_float32

BLOCK_BYTES = 64 << 20  # float32 bytes per block of rows (bounds the memory of one update)


def merged_tensor(plan: TensorPlan) -> TensorInfo | Iterator[np.ndarray]:
    """The output tensor: a stored tensor to copy as is, or blocks of rows in the output dtype."""
    start, ops = plan.source, plan.ops
    replaces = [i for i, op in enumerate(ops) if op.kind == "replace"]
    if replaces:  # a replacement discards everything before it
        start, ops = ops[replaces[-1]].b, ops[replaces[-1] + 1:]
    if not ops and start.dtype == plan.dtype:
        return start
    return _blocks(start, ops, plan.dtype)


def _blocks(start: TensorInfo, ops: list[Op], dtype: str) -> Iterator[np.ndarray]:
    if len(start.shape) == 0:  # a scalar: one block
        weight = read_float32(start).copy()
        for op in ops:
            weight += read_float32(op.b) * np.float32(op.scale)
        yield encode(weight, dtype)
        return
    rows = start.shape[0]
    row_elems = int(np.prod(start.shape[1:], dtype=np.int64))
    step = max(1, BLOCK_BYTES // (4 * max(1, row_elems)))
    factors = [(op, read_float32(op.b), read_float32(op.a) if op.a is not None else None) for op in ops]
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        weight = read_rows_float32(start, r0, r1)
        for op, b, a in factors:
            if op.kind == "lora":
                # Rows r0:r1 of B @ A, or of (B @ A).T = A.T @ B.T when stored transposed.
                delta = a[:, r0:r1].T @ b.T if op.transpose else b[r0:r1] @ a
                delta *= np.float32(op.scale)
            else:  # "add": a lora_B bias
                delta = b[r0:r1] * np.float32(op.scale)
            weight += delta
            del delta
        yield encode(weight, dtype)


def write_shard(plan: MergePlan, shard: str, out_dir: Path) -> dict[str, int]:
    """Write one merged shard; returns tensor name -> bytes written."""
    tensors = {t.name: t for t in plan.shard_tensors(shard)}
    metadata = dict(plan.base.metadata.get(shard) or {})
    metadata.setdefault("format", "pt")
    with ShardWriter(out_dir / shard, [(t.name, t.dtype, t.shape) for t in tensors.values()], metadata) as writer:
        for name in writer.names:
            writer.write(name, merged_tensor(tensors[name]))
    return dict(writer.order)


def write_weights(plan: MergePlan, out_dir: Path, on_shard: Callable[[str], None] = lambda shard: None) -> dict[str, str]:
    """Write every shard (and the index when the base had one); returns the weight map."""
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
