"""Convert trusted .bin (pickle) weights to safetensors once, so the merge reads one format.

Only reached with --allow_pickle; imports torch (`weights_only=True` still limits what
the unpickler may build). Each .bin file is loaded alone, so memory stays at one shard.
"""

from __future__ import annotations

import json
from pathlib import Path

from subjectlm.merge.tensors import ShardWriter

_CODES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "float64": "F64", "int64": "I64",
          "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL"}


def convert_bin(source: Path, target: Path) -> dict[str, str]:
    """Write the tensors of one .bin file as `target` (.safetensors); returns name -> file name."""
    import torch

    state = torch.load(source, map_location="cpu", weights_only=True, mmap=True)
    entries, tensors = [], {}
    for name, tensor in state.items():
        code = _CODES.get(str(tensor.dtype).removeprefix("torch."))
        if code is None:
            raise ValueError(f"{source}: tensor {name} has unsupported dtype {tensor.dtype}")
        tensors[name] = tensor
        entries.append((name, code, tuple(tensor.shape)))
    with ShardWriter(target, entries) as writer:
        for name in writer.names:
            # Raw bytes through a uint8 view: numpy has no bf16.
            data = tensors[name].detach().contiguous().reshape(-1).view(torch.uint8).numpy()
            writer.write(name, data)
    return {name: target.name for name in tensors}


def convert_base(files: list[Path], target_dir: Path) -> None:
    """A pickle checkpoint as a safetensors one (index included) in `target_dir`."""
    weight_map: dict[str, str] = {}
    for i, source in enumerate(files):
        name = "model.safetensors" if len(files) == 1 else f"model-{i + 1:05d}-of-{len(files):05d}.safetensors"
        weight_map.update(convert_bin(source, target_dir / name))
    if len(files) > 1:
        (target_dir / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
