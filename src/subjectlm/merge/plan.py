"""Plan a merge before writing anything: which tensor goes where, changed how.

Every check that can fail (missing target module, hidden size, vocabulary, dtype,
unsupported adapter option) happens here, so a bad combination is refused before the
output directory exists.

Tied embeddings: a tied base stores only the input embedding and uses it as the
output layer too. A peft adapter on such a model changes them separately (a
`modules_to_save` copy of embed_tokens, or a LoRA on it, leaves lm_head on the
original weights), so the merged model keeps the tie only when both end up
bit-identical (peft's ensure_weight_tying saves two equal copies); otherwise it is
untied: `lm_head.weight` is written next to the embedding and config.json says
`tie_word_embeddings: false`. That is what makes its logits equal the peft model's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from subjectlm.merge.adapter import Adapter, Op
from subjectlm.merge.errors import MergeError
from subjectlm.merge.tensors import FLOAT_DTYPES, TensorInfo, read_header, same_bytes

SAFE_INDEX = "model.safetensors.index.json"
SAFE_SINGLE = "model.safetensors"
PICKLE_INDEX = "pytorch_model.bin.index.json"
PICKLE_SINGLE = "pytorch_model.bin"
# How checkpoints name the input embedding and the output layer (checked in this order).
INPUT_EMBEDDING_SUFFIXES = ("embed_tokens.weight", "wte.weight", "word_embeddings.weight", "embed_in.weight")
OUTPUT_EMBEDDING_NAMES = ("lm_head.weight", "embed_out.weight")


@dataclass
class BaseCheckpoint:
    path: Path
    config: dict[str, Any]
    shards: list[str]                # file names, in order
    tensors: dict[str, TensorInfo]   # every stored tensor
    shard_of: dict[str, str]         # tensor name -> shard file name
    metadata: dict[str, dict[str, str]]
    sharded: bool


def find_pickles(path: Path) -> list[Path]:
    """The .bin files of a pickle checkpoint (empty when it has safetensors)."""
    if (path / SAFE_INDEX).is_file() or (path / SAFE_SINGLE).is_file():
        return []
    if (path / PICKLE_INDEX).is_file():
        index = json.loads((path / PICKLE_INDEX).read_text())
        return [path / name for name in sorted(set(index["weight_map"].values()))]
    return [path / PICKLE_SINGLE] if (path / PICKLE_SINGLE).is_file() else []


def read_base(path: Path, weights_dir: Path | None = None) -> BaseCheckpoint:
    """The base model's layout; `weights_dir` holds safetensors converted from pickles, if any."""
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    if config.get("quantization_config"):
        raise MergeError(f"{path}: the base model is quantized; merge into the unquantized model instead")
    source = weights_dir or path
    if (source / SAFE_INDEX).is_file():
        weight_map = json.loads((source / SAFE_INDEX).read_text())["weight_map"]
        shards = sorted(set(weight_map.values()))
        sharded = True
    elif (source / SAFE_SINGLE).is_file():
        shards, sharded = [SAFE_SINGLE], False
    else:
        raise MergeError(f"{path}: no {SAFE_SINGLE} or {SAFE_INDEX}: not a safetensors model directory")
    tensors: dict[str, TensorInfo] = {}
    shard_of: dict[str, str] = {}
    metadata = {}
    for shard in shards:
        if not (source / shard).is_file():
            raise MergeError(f"{path}: shard {shard} named by the index is missing")
        found, metadata[shard] = read_header(source / shard)
        for name, info in found.items():
            tensors[name] = info
            shard_of[name] = shard
    return BaseCheckpoint(path, config, shards, tensors, shard_of, metadata, sharded)


@dataclass
class TensorPlan:
    name: str
    shard: str
    source: TensorInfo          # the stored tensor the result starts from
    dtype: str                  # output dtype code
    shape: tuple[int, ...]
    ops: list[Op] = field(default_factory=list)  # applied after `source`, in order


@dataclass
class MergePlan:
    base: BaseCheckpoint
    tensors: dict[str, TensorPlan]
    config: dict[str, Any]            # the merged model's config.json
    notes: list[str]

    def shard_tensors(self, shard: str) -> list[TensorPlan]:
        return [t for t in self.tensors.values() if t.shard == shard]


def _input_embedding(names) -> str | None:
    for suffix in INPUT_EMBEDDING_SUFFIXES:
        for name in names:
            if name.endswith(suffix):
                return name
    return None


def _is_tied(base: BaseCheckpoint) -> tuple[bool, str | None, str]:
    embed = _input_embedding(base.tensors)
    head = next((n for n in OUTPUT_EMBEDDING_NAMES if n in base.tensors), OUTPUT_EMBEDDING_NAMES[0])
    flag = base.config.get("tie_word_embeddings")
    tied = bool(flag) if flag is not None else head not in base.tensors
    return tied and embed is not None, embed, head


def _output_dtype(info: TensorInfo, dtype: str | None) -> str:
    return dtype if dtype and info.dtype in FLOAT_DTYPES else info.dtype


def build_plan(base: BaseCheckpoint, adapters: list[Adapter], dtype: str | None) -> MergePlan:
    """Check every adapter against the base and decide each output tensor. `dtype`: a code or None (keep)."""
    tied, embed, head = _is_tied(base)
    plans = {name: TensorPlan(name, base.shard_of[name], info, _output_dtype(info, dtype), info.shape)
             for name, info in base.tensors.items()}
    # While tied, the output layer is a virtual tensor that starts as the input embedding.
    virtual_head = None
    if tied:
        # A stored output layer of a tied model is ignored by transformers (it loads the embedding there).
        plans.pop(head, None)
        source = base.tensors[embed]
        virtual_head = TensorPlan(head, base.shard_of[embed], source, _output_dtype(source, dtype), source.shape)
    notes: list[str] = []
    for adapter in adapters:
        for name, ops in adapter.ops.items():
            plan = plans.get(name) or (virtual_head if virtual_head and name == head else None)
            if plan is None:
                module = name.rsplit(".", 1)[0]
                raise MergeError(
                    f"{adapter.path}: the adapter changes {module} ({name}), which the base model {base.path} does "
                    "not have: was it trained on a different base model?"
                )
            for op in ops:
                _check_op(plan, op, adapter, name, embed, head)
                if op.kind == "replace":
                    plan.ops = [op]
                    plan.shape = op.b.shape
                else:
                    plan.ops.append(op)
    config = dict(base.config)
    if virtual_head is not None and (virtual_head.ops or plans[embed].ops):
        if _same_result(plans[embed], virtual_head):
            notes.append("tied embeddings kept: the adapter's input and output embeddings are identical")
        else:
            plans[head] = virtual_head
            config["tie_word_embeddings"] = False
            notes.append("untied the embeddings: the adapter changes the input and output embeddings differently")
    _check_vocab(plans, embed, head, base)
    if embed is not None and plans[embed].shape[0] != base.tensors[embed].shape[0]:
        vocab = plans[embed].shape[0]
        notes.append(f"vocabulary resized from {base.tensors[embed].shape[0]} to {vocab}")
        config["vocab_size"] = vocab
        if isinstance(config.get("text_config"), dict) and "vocab_size" in config["text_config"]:
            config["text_config"] = {**config["text_config"], "vocab_size": vocab}
    if dtype:
        from subjectlm.merge.tensors import TORCH_NAMES

        key = "torch_dtype" if "torch_dtype" in config and "dtype" not in config else "dtype"
        config[key] = TORCH_NAMES[dtype]
    return MergePlan(base, plans, config, notes)


def _check_op(plan: TensorPlan, op: Op, adapter: Adapter, name: str, embed: str | None, head: str) -> None:
    where = f"{adapter.path}: {name}"
    if plan.source.dtype not in FLOAT_DTYPES:
        raise MergeError(f"{where}: the base stores it as {plan.source.dtype}, not a float type this merge can update")
    shape = op.result_shape
    if op.kind == "replace":
        resizable = name in (embed, head) and len(shape) == 2 and shape[1:] == plan.shape[1:]
        if shape != plan.shape and not resizable:
            raise MergeError(f"{where}: the adapter's copy has shape {list(shape)}, the base {list(plan.shape)}: "
                             "hidden size mismatch, was it trained on a different base model?")
        if op.b.dtype not in FLOAT_DTYPES:
            raise MergeError(f"{where}: the adapter stores it as {op.b.dtype}, not a float type")
        return
    if shape != plan.shape:
        raise MergeError(f"{where}: the LoRA update has shape {list(shape)} but the base weight is {list(plan.shape)}: "
                         "hidden size mismatch, was it trained on a different base model?")
    for part in (op.a, op.b):
        if part is not None and part.dtype not in FLOAT_DTYPES:
            raise MergeError(f"{where}: LoRA weights stored as {part.dtype}, not a float type")


def _same_result(a: TensorPlan, b: TensorPlan) -> bool:
    """Whether two planned tensors are certainly bit-identical (same source bytes, no LoRA)."""
    def final(plan: TensorPlan) -> TensorInfo | None:
        if any(op.kind != "replace" for op in plan.ops):
            return None
        return plan.ops[-1].b if plan.ops else plan.source

    fa, fb = final(a), final(b)
    return fa is not None and fb is not None and a.dtype == b.dtype and same_bytes(fa, fb)


def _check_vocab(plans: dict[str, TensorPlan], embed: str | None, head: str, base: BaseCheckpoint) -> None:
    if embed is None or head not in plans:
        return
    rows_in, rows_out = plans[embed].shape[0], plans[head].shape[0]
    if rows_in != rows_out:
        raise MergeError(
            f"vocabulary mismatch: after the adapters the input embedding has {rows_in} rows and the output layer "
            f"{rows_out} (base: {base.tensors[embed].shape[0]}). An adapter that resizes the vocabulary must save "
            "both embed_tokens and lm_head (modules_to_save)"
        )
