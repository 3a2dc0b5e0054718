"""Name tables for GGUF export: HF model families, tensor names, pre-tokenizers.

Everything here is data, read top to bottom. `tensor_targets(family, n_blocks, n_experts)` expands
the tensor table once into a flat HF-name -> GGUF-name lookup. Sources: llama.cpp's
`src/llama-arch.cpp` (GGUF tensor names per architecture) and `src/models/<arch>.cpp` (which
tensors each architecture loads, with which shapes), gguf-py's `gguf/tensor_mapping.py` (the HF
names llama.cpp's own converter maps), all of the llama.cpp vendored by llama-cpp-python 0.3.36;
and the HF modeling files (`modeling_llama.py`, `modeling_qwen2.py`, `modeling_qwen3.py`,
`modeling_qwen3_moe.py`, `modeling_gemma.py`, `modeling_gemma2.py`, `modeling_gemma3.py`,
`modeling_phi3.py`).
"""

from __future__ import annotations

import dataclasses
import functools
import types


@dataclasses.dataclass(frozen=True)
class Family:
    arch: str                 # GGUF `general.architecture`
    permute_qk: bool          # llama.cpp's "llama" rope rotates adjacent pairs, HF rotates halves
    norm_plus_one: bool       # Gemma's RMSNorm multiplies by (1 + w); llama.cpp by w
    tokenizer_hint: str = ""  # what tokenizer this family usually ships (for error messages)


# HF `model_type` -> how llama.cpp runs it. Every arch here is in llama-arch.cpp's LLM_ARCH_NAMES
# of llama-cpp-python 0.3.36's llama.cpp.
FAMILIES: types.MappingProxyType[str, Family] = types.MappingProxyType({
    "llama": Family("llama", permute_qk=True, norm_plus_one=False),
    "mistral": Family("llama", permute_qk=True, norm_plus_one=False),   # llama.cpp runs Mistral as llama
    "qwen2": Family("qwen2", permute_qk=False, norm_plus_one=False),    # NEOX rope: HF layout as is
    "qwen3": Family("qwen3", permute_qk=False, norm_plus_one=False),
    "qwen3_moe": Family("qwen3moe", permute_qk=False, norm_plus_one=False),
    "gemma": Family("gemma", permute_qk=False, norm_plus_one=True),
    "gemma2": Family("gemma2", permute_qk=False, norm_plus_one=True),
    "gemma3_text": Family("gemma3", permute_qk=False, norm_plus_one=True),  # Gemma3ForCausalLM
    "gemma3": Family("gemma3", permute_qk=False, norm_plus_one=True),       # the text part of the VLM
    "phi3": Family("phi3", permute_qk=False, norm_plus_one=False),
})

_ALL = tuple(FAMILIES)
_GEMMA3 = ("gemma3", "gemma3_text")
_SANDWICH = ("gemma2", *_GEMMA3)        # a norm before and after both attention and MLP
_PRE_NORM = tuple(f for f in _ALL if f not in _SANDWICH)
_QK_NORM = ("qwen3", "qwen3_moe", *_GEMMA3)
_SEPARATE_QKV = tuple(f for f in _ALL if f != "phi3")
_DENSE_MLP = tuple(f for f in _ALL if f not in ("phi3", "qwen3_moe"))

# (GGUF name(s), HF name, families). `{bid}` is the block index; .weight/.bias carry over.
# `{xid}` is an expert index: those HF tensors are stacked into one [n_expert, ...] GGUF tensor.
# Two GGUF names: the HF tensor's rows are split in two equal halves, the first half to the first name.
TENSORS: tuple[tuple[str | tuple[str, ...], str, tuple[str, ...]], ...] = (
    ("token_embd", "model.embed_tokens", _ALL),
    ("output_norm", "model.norm", _ALL),
    ("output", "lm_head", _ALL),
    ("blk.{bid}.attn_norm", "model.layers.{bid}.input_layernorm", _ALL),
    ("blk.{bid}.attn_q", "model.layers.{bid}.self_attn.q_proj", _SEPARATE_QKV),
    ("blk.{bid}.attn_k", "model.layers.{bid}.self_attn.k_proj", _SEPARATE_QKV),
    ("blk.{bid}.attn_v", "model.layers.{bid}.self_attn.v_proj", _SEPARATE_QKV),
    # Phi-3 keeps q, k and v in one matrix; llama.cpp's create_tensor_qkv loads it fused as attn_qkv.
    ("blk.{bid}.attn_qkv", "model.layers.{bid}.self_attn.qkv_proj", ("phi3",)),
    ("blk.{bid}.attn_output", "model.layers.{bid}.self_attn.o_proj", _ALL),
    # Qwen 3 and Gemma 3 RMS-normalize each head's q and k before rope (one [head_dim] weight).
    ("blk.{bid}.attn_q_norm", "model.layers.{bid}.self_attn.q_norm", _QK_NORM),
    ("blk.{bid}.attn_k_norm", "model.layers.{bid}.self_attn.k_norm", _QK_NORM),
    # Llama-style blocks have one norm before the MLP, stored under "post_attention".
    ("blk.{bid}.ffn_norm", "model.layers.{bid}.post_attention_layernorm", _PRE_NORM),
    # Gemma 2 and 3 have a norm after attention and a pre/post pair around the MLP.
    ("blk.{bid}.post_attention_norm", "model.layers.{bid}.post_attention_layernorm", _SANDWICH),
    ("blk.{bid}.ffn_norm", "model.layers.{bid}.pre_feedforward_layernorm", _SANDWICH),
    ("blk.{bid}.post_ffw_norm", "model.layers.{bid}.post_feedforward_layernorm", _SANDWICH),
    ("blk.{bid}.ffn_gate", "model.layers.{bid}.mlp.gate_proj", _DENSE_MLP),
    ("blk.{bid}.ffn_up", "model.layers.{bid}.mlp.up_proj", _DENSE_MLP),
    ("blk.{bid}.ffn_down", "model.layers.{bid}.mlp.down_proj", (*_DENSE_MLP, "phi3")),
    # Phi-3's gate and up are one [2 * ff, hidden] matrix, gate rows first; llama.cpp's phi3 loads it
    # as ffn_up of 2 * n_ff rows and splits it the same way (LLM_FFN_SWIGLU).
    ("blk.{bid}.ffn_up", "model.layers.{bid}.mlp.gate_up_proj", ("phi3",)),
    # Qwen 3 MoE: the router, then the experts. Checkpoints on disk keep one tensor per expert
    # (stacked here); transformers 5 saves them already stacked, gate and up fused (split here).
    ("blk.{bid}.ffn_gate_inp", "model.layers.{bid}.mlp.gate", ("qwen3_moe",)),
    ("blk.{bid}.ffn_gate_exps", "model.layers.{bid}.mlp.experts.{xid}.gate_proj", ("qwen3_moe",)),
    ("blk.{bid}.ffn_up_exps", "model.layers.{bid}.mlp.experts.{xid}.up_proj", ("qwen3_moe",)),
    ("blk.{bid}.ffn_down_exps", "model.layers.{bid}.mlp.experts.{xid}.down_proj", ("qwen3_moe",)),
    (("blk.{bid}.ffn_gate_exps", "blk.{bid}.ffn_up_exps"), "model.layers.{bid}.mlp.experts.gate_up_proj",
     ("qwen3_moe",)),
    ("blk.{bid}.ffn_down_exps", "model.layers.{bid}.mlp.experts.down_proj", ("qwen3_moe",)),
)

# HF tensors that carry no weights llama.cpp needs (recomputed buffers).
SKIPPED_SUFFIXES = ("rotary_emb.inv_freq",)

# Multimodal Gemma 3 (`gemma3`, Gemma3ForConditionalGeneration): the language model's tensors under
# these prefixes are renamed to the text model's; the vision tower and projector are left out (llama.cpp
# loads them from a separate mmproj file). transformers 5 writes the first form, 4.x the second.
TEXT_PREFIXES: tuple[tuple[str, str], ...] = (
    ("model.language_model.", "model."),
    ("language_model.model.", "model."),
    ("language_model.lm_head.", "lm_head."),
)
NOT_TEXT_PREFIXES: tuple[str, ...] = ("model.vision_tower.", "model.multi_modal_projector.", "vision_tower.",
                                      "multi_modal_projector.")


@dataclasses.dataclass(frozen=True)
class Target:
    """Where one HF tensor goes: a GGUF tensor, or one expert's slice of it, or half of its rows."""
    name: str                  # GGUF base name (no .weight/.bias)
    expert: int | None = None  # this HF tensor is row `expert` of a stacked [n_expert, ...] GGUF tensor
    half: int | None = None    # this GGUF tensor is half `half` (0 or 1) of the HF tensor's rows


@functools.lru_cache(maxsize=None)
def tensor_targets(family: str, n_blocks: int, n_experts: int = 0) -> types.MappingProxyType[str, tuple[Target, ...]]:
    """Flat HF base name (no .weight/.bias) -> its GGUF target(s) for one family and depth."""
    if family not in FAMILIES:
        raise KeyError(family)
    flat: dict[str, tuple[Target, ...]] = {}
    for gguf_names, hf_name, families in TENSORS:
        if family not in families:
            continue
        names = (gguf_names,) if isinstance(gguf_names, str) else gguf_names
        for bid in range(n_blocks) if "{bid}" in hf_name else [None]:
            for xid in range(n_experts) if "{xid}" in hf_name else [None]:
                halves = [None] if len(names) == 1 else range(len(names))
                flat[hf_name.format(bid=bid, xid=xid)] = tuple(
                    Target(n.format(bid=bid), expert=xid, half=h) for n, h in zip(names, halves))
    return types.MappingProxyType(flat)


def text_model_name(hf_name: str) -> str | None:
    """A multimodal checkpoint's tensor name as the text model's; None for vision tensors."""
    if hf_name.startswith(NOT_TEXT_PREFIXES):
        return None
    for prefix, replacement in TEXT_PREFIXES:
        if hf_name.startswith(prefix):
            return replacement + hf_name[len(prefix):]
    return hf_name


def gguf_targets(hf_name: str, family: str, n_blocks: int, n_experts: int = 0) -> tuple[tuple[str, Target], ...]:
    """`model.layers.3.self_attn.q_proj.weight` -> (("blk.3.attn_q.weight", target),); () for skipped
    tensors. A parameter saved without a suffix (transformers 5's fused experts) is a weight."""
    if hf_name.endswith(SKIPPED_SUFFIXES):
        return ()
    table = tensor_targets(family, n_blocks, n_experts)
    base, _, suffix = hf_name.rpartition(".")
    if base not in table or suffix not in ("weight", "bias"):
        base, suffix = hf_name, "weight"
    if base not in table:
        raise KeyError(hf_name)
    return tuple((f"{t.name}.{suffix}", t) for t in table[base])


def gguf_tensor_name(hf_name: str, family: str, n_blocks: int) -> str | None:
    """`model.layers.3.self_attn.q_proj.weight` -> `blk.3.attn_q.weight`; None for skipped tensors."""
    targets = gguf_targets(hf_name, family, n_blocks)
    return targets[0][0] if targets else None


# Pre-tokenizer regexes as they appear in tokenizer.json files.
_LLAMA3_SPLIT = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
                 "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")
_QWEN2_SPLIT = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
                "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")

# A BPE tokenizer's pre-tokenizer steps -> llama.cpp's `tokenizer.ggml.pre` name, which picks
# the regexes llama.cpp splits text with (llama.cpp cannot run an arbitrary regex). Steps are
# ("bytelevel", use_regex), ("digits", individual_digits), ("split", pattern).
PRE_TOKENIZERS: types.MappingProxyType[tuple, str] = types.MappingProxyType({
    (("bytelevel", True),): "gpt-2",                                  # GPT-2, SmolLM re-exported by transformers
    (("digits", True), ("bytelevel", True)): "smollm",                # SmolLM / StarCoder family
    (("split", _LLAMA3_SPLIT), ("bytelevel", False)): "llama-bpe",    # Llama 3
    (("split", _QWEN2_SPLIT), ("bytelevel", False)): "qwen2",         # Qwen 2 / 2.5
})
