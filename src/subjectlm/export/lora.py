"""A PEFT LoRA adapter as a GGUF adapter, for llama.cpp's `--lora` (llama_cpp.Llama(lora_path=...)).

Tensors are renamed with the same table as full models (names.py) plus `.lora_a`/`.lora_b`
and stay in their HF shapes (A: [r, in], B: [out, r]), which is how llama.cpp checks them
against the base tensor. Where llama.cpp's layout differs from HF (llama q/k rows), the
rows of B are rearranged exactly as the base weight's rows are, since the update is B @ A.
llama.cpp scales the update by alpha / r; rsLoRA's alpha / sqrt(r) is written as an
equivalent alpha.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from subjectlm.export.gguf import ExportError, permute_qk
from subjectlm.export.names import FAMILIES, gguf_tensor_name

_PREFIX = "base_model.model."


def _adapter_tensors(adapter_dir: Path):
    import torch
    from safetensors import safe_open

    path = adapter_dir / "adapter_model.safetensors"
    if not path.is_file():
        raise ExportError(f"{adapter_dir}: no adapter_model.safetensors (a PEFT LoRA adapter directory)")
    with safe_open(str(path), framework="pt") as handle:
        for name in handle.keys():
            yield name, handle.get_tensor(name).to(torch.float32).numpy()


def export_lora_gguf(adapter_dir: str | Path, base_dir: str | Path, output: str | Path, outtype: str = "f16",
                     overwrite: bool = False) -> Path:
    """Write the adapter in `adapter_dir` (trained on `base_dir`) as a GGUF LoRA adapter."""
    import gguf
    import numpy as np

    from subjectlm.io import atomic_file, check_output_dir

    adapter_dir, base_dir, output = Path(adapter_dir), Path(base_dir), Path(output)
    if outtype not in ("f32", "f16"):
        raise ExportError(f"outtype: LoRA adapters are written as f16 or f32, not {outtype!r}")
    check_output_dir(output, overwrite)
    cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    base = json.loads((base_dir / "config.json").read_text())
    family = base.get("model_type")
    if family not in FAMILIES:
        raise ExportError(f"model_type {family!r} is not supported; supported: {', '.join(FAMILIES)}")
    if cfg.get("peft_type", "LORA") != "LORA" or cfg.get("use_dora"):
        raise ExportError("only plain LoRA adapters can be exported (not DoRA or other PEFT types)")
    if cfg.get("modules_to_save"):
        raise ExportError(f"the adapter also trains whole modules {cfg['modules_to_save']}: merge it and export "
                          "the merged model instead")
    rank = int(cfg["r"])
    alpha = float(cfg["lora_alpha"]) * (math.sqrt(rank) if cfg.get("use_rslora") else 1.0)
    spec = FAMILIES[family]
    n_blocks = base["num_hidden_layers"]
    n_head = base["num_attention_heads"]
    n_kv = base.get("num_key_value_heads") or n_head

    tensors = []
    for name, array in _adapter_tensors(adapter_dir):
        module, _, kind = name.removeprefix(_PREFIX).rpartition(".lora_")
        kind = kind.split(".")[0]  # "A" | "B" (PEFT: lora_A.weight / lora_A.default.weight)
        try:
            target = gguf_tensor_name(module + ".weight", family, n_blocks)
        except KeyError:
            raise ExportError(f"adapter tensor {name!r} targets a module llama.cpp adapters cannot hold") from None
        if kind == "B" and spec.permute_qk and target.endswith("attn_q.weight"):
            array = permute_qk(array, n_head)
        elif kind == "B" and spec.permute_qk and target.endswith("attn_k.weight"):
            array = permute_qk(array, n_kv)
        dtype = np.float16 if outtype == "f16" else np.float32
        tensors.append((f"{target}.lora_{kind.lower()}", np.ascontiguousarray(array, dtype=dtype)))
    if not tensors:
        raise ExportError(f"{adapter_dir}: the adapter has no LoRA tensors")

    with atomic_file(output, mode="wb") as handle:
        writer = gguf.GGUFWriter(path=None, arch=spec.arch)
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
        for name, array in sorted(tensors):  # a before b for each target
            writer.add_tensor(name, array)
        writer.fout = [handle]
        writer.state = gguf.gguf_writer.WriterState.EMPTY
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        handle.flush()
        writer.fout = None
    return output
