"""Read a peft LoRA adapter directory into merge operations, without loading its tensors.

An adapter is `adapter_config.json` plus `adapter_model.safetensors`, whose keys are
the model's parameter names under `base_model.model.`:

    <module>.lora_A.weight [r, in]   <module>.lora_B.weight [out, r]   -> W += scale * B @ A
    <module>.lora_B.bias   [out]     (lora_bias=True)                   -> b += scale * bias
    <module>.lora_embedding_A [r, vocab], .lora_embedding_B [dim, r]    -> E += scale * (B @ A).T
    anything else (modules_to_save copies, biases with bias="all")      -> replaces that tensor

scale is lora_alpha / r (alpha / sqrt(r) with rsLoRA), per module from rank_pattern /
alpha_pattern when they match, as peft computes it when it builds the layer.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from subjectlm.merge.errors import MergeError
from subjectlm.merge.tensors import TensorInfo, read_header

PREFIX = "base_model.model."
SAFE_WEIGHTS = "adapter_model.safetensors"
PICKLE_WEIGHTS = "adapter_model.bin"

# adapter_config.json options whose effect a plain weight update cannot reproduce:
# key -> why. Each is refused when set to anything truthy.
UNSUPPORTED_OPTIONS = {
    "use_dora": "DoRA rescales each output by a learned magnitude (not supported by this merge)",
    "layer_replication": "layer replication changes the model's layer list",
    "trainable_token_indices": "trainable-token deltas are not supported by this merge",
    "target_parameters": "LoRA on raw parameters (e.g. MoE experts) is not supported by this merge",
    "alora_invocation_tokens": "activated LoRA only applies after its invocation tokens; it cannot be merged",
    "use_qalora": "QA-LoRA adapters belong to a quantized base",
    "use_bdlora": "block-diagonal LoRA is not supported by this merge",
    "megatron_config": "Megatron-parallel layers are not supported by this merge",
}
# init_lora_weights values that also rewrote the base weights during training (the
# adapter only makes sense on that residual base unless it was converted on save).
BASE_CHANGING_INITS = ("pissa", "olora", "corda", "loftq", "lora_ga")


@dataclass(frozen=True)
class Op:
    """One change to one output tensor, in adapter order.

    kind: "lora" (W += scale * B @ A, transposed if `transpose`), "add" (W += scale * B,
    a lora_B bias) or "replace" (W = B).
    """

    kind: str
    adapter: str
    b: TensorInfo
    a: TensorInfo | None = None
    scale: float = 1.0
    transpose: bool = False

    @property
    def result_shape(self) -> tuple[int, ...]:
        if self.kind != "lora":
            return self.b.shape
        shape = (self.b.shape[0], self.a.shape[1])
        return shape[::-1] if self.transpose else shape


@dataclass
class Adapter:
    path: Path
    config: dict[str, Any]
    ops: dict[str, list[Op]]  # base tensor name -> ops this adapter applies to it

    @property
    def tokenizer_dir(self) -> Path | None:
        has = any((self.path / n).exists() for n in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model"))
        return self.path if has else None


def check_config(config: dict[str, Any], where: Path) -> None:
    kind = config.get("peft_type", "LORA")
    if kind != "LORA":
        raise MergeError(f"{where}: peft_type {kind} is not LoRA; only LoRA adapters can be merged")
    for key, why in UNSUPPORTED_OPTIONS.items():
        if config.get(key):
            raise MergeError(f"{where}: adapter_config.json sets {key}={config[key]!r}: {why}")
    init = config.get("init_lora_weights")
    if isinstance(init, str) and init.lower().startswith(BASE_CHANGING_INITS):
        raise MergeError(
            f"{where}: init_lora_weights={init!r} changed the base weights during training; save the adapter "
            "with peft's path_initial_model_for_weight_conversion to make it mergeable onto the original base"
        )
    for key in ("r", "lora_alpha"):
        if not isinstance(config.get(key), (int, float)) or config[key] <= 0:
            raise MergeError(f"{where}: adapter_config.json: {key} must be a positive number, got {config.get(key)!r}")


def _pattern_value(patterns: dict[str, Any], module: str, default: Any) -> Any:
    # peft's rule: a pattern applies when it matches the end of the module name at a dot boundary.
    for pattern, value in patterns.items():
        if re.match(rf"(.*\.)?({pattern})$", module):
            return value
    return default


def scale_for(config: dict[str, Any], module: str) -> tuple[int, float]:
    """(rank, scale) of one module, as peft computes them."""
    r = _pattern_value(config.get("rank_pattern") or {}, module, config["r"])
    alpha = _pattern_value(config.get("alpha_pattern") or {}, module, config["lora_alpha"])
    scale = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
    return int(r), scale


def weights_file(path: Path, allow_pickle: bool) -> Path:
    if (path / SAFE_WEIGHTS).is_file():
        return path / SAFE_WEIGHTS
    if (path / PICKLE_WEIGHTS).is_file():
        if not allow_pickle:
            raise MergeError(
                f"{path}: the adapter is a pickle ({PICKLE_WEIGHTS}), which can run code when loaded; "
                "refused. Re-save it as safetensors or pass --allow_pickle if you trust it"
            )
        return path / PICKLE_WEIGHTS
    raise MergeError(f"{path}: no {SAFE_WEIGHTS} in the adapter directory")


def read_adapter(path: str | Path, weights: Path) -> Adapter:
    """Parse an adapter directory whose weights are (already) in safetensors file `weights`."""
    path = Path(path)
    config = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))
    check_config(config, path)
    tensors, _ = read_header(weights)
    name = path.name
    fan_in_fan_out = bool(config.get("fan_in_fan_out"))
    pairs: dict[str, dict[str, TensorInfo]] = {}
    ops: dict[str, list[Op]] = {}
    replaced: dict[str, TensorInfo] = {}
    for key, info in sorted(tensors.items()):
        local = key[len(PREFIX):] if key.startswith(PREFIX) else key
        if ".original_module." in local:
            continue  # the base's own (possibly resized) weights, saved alongside a resized copy
        # "<m>.modules_to_save.weight" duplicates "<m>.weight" (peft saves both when the vocabulary was resized).
        local = local.replace(".base_layer.", ".").replace(".modules_to_save.", ".")
        match = re.fullmatch(r"(.+)\.(lora_A\.weight|lora_B\.weight|lora_B\.bias|lora_embedding_A|lora_embedding_B)", local)
        if match:
            pairs.setdefault(match.group(1), {})[match.group(2)] = info
        elif ".lora_" in local or "lora_magnitude_vector" in local:
            raise MergeError(f"{path}: adapter tensor {key} is of a kind this merge does not know")
        elif local not in replaced or ".modules_to_save." not in key:
            replaced[local] = info
    for local, info in replaced.items():
        ops[local] = [Op("replace", name, info)]
    for module, parts in sorted(pairs.items()):
        r, scale = scale_for(config, module)
        if "lora_A.weight" in parts and "lora_B.weight" in parts:
            a, b, transpose = parts["lora_A.weight"], parts["lora_B.weight"], fan_in_fan_out
        elif "lora_embedding_A" in parts and "lora_embedding_B" in parts:
            a, b, transpose = parts["lora_embedding_A"], parts["lora_embedding_B"], True
        else:
            raise MergeError(f"{path}: module {module} has only part of a LoRA pair ({', '.join(sorted(parts))})")
        if len(a.shape) != 2 or len(b.shape) != 2:
            raise MergeError(f"{path}: module {module}: only LoRA on linear and embedding layers can be merged "
                             f"(lora_A has shape {list(a.shape)})")
        if a.shape[0] != r or b.shape[1] != r:
            raise MergeError(f"{path}: module {module}: rank {a.shape[0]} in the weights but r={r} in "
                             "adapter_config.json: the config does not belong to these weights")
        ops.setdefault(f"{module}.weight", []).append(Op("lora", name, b, a, scale, transpose))
        if "lora_B.bias" in parts:
            ops.setdefault(f"{module}.bias", []).append(Op("add", name, parts["lora_B.bias"], scale=scale))
    return Adapter(path, config, ops)
