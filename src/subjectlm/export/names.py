"""Name tables for GGUF export: HF model families, tensor names, pre-tokenizers.

Everything here is data, read top to bottom. `tensor_names(family, n_blocks)` expands
the tensor table once into a flat HF-name -> GGUF-name lookup. Sources: llama.cpp's
`src/llama-arch.cpp` (GGUF tensor names per architecture) and the HF modeling files
(`modeling_llama.py`, `modeling_qwen2.py`, `modeling_gemma.py`, `modeling_gemma2.py`).
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


# HF `model_type` -> how llama.cpp runs it.
FAMILIES: types.MappingProxyType[str, Family] = types.MappingProxyType({
    "llama": Family("llama", permute_qk=True, norm_plus_one=False),
    "mistral": Family("llama", permute_qk=True, norm_plus_one=False),   # llama.cpp runs Mistral as llama
    "qwen2": Family("qwen2", permute_qk=False, norm_plus_one=False),    # NEOX rope: HF layout as is
    "gemma": Family("gemma", permute_qk=False, norm_plus_one=True),
    "gemma2": Family("gemma2", permute_qk=False, norm_plus_one=True),
})

_ALL = tuple(FAMILIES)
_NOT_GEMMA2 = ("llama", "mistral", "qwen2", "gemma")

# (GGUF name, HF name, families). `{bid}` is the block index; .weight/.bias carry over.
TENSORS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("token_embd", "model.embed_tokens", _ALL),
    ("output_norm", "model.norm", _ALL),
    ("output", "lm_head", _ALL),
    ("blk.{bid}.attn_norm", "model.layers.{bid}.input_layernorm", _ALL),
    ("blk.{bid}.attn_q", "model.layers.{bid}.self_attn.q_proj", _ALL),
    ("blk.{bid}.attn_k", "model.layers.{bid}.self_attn.k_proj", _ALL),
    ("blk.{bid}.attn_v", "model.layers.{bid}.self_attn.v_proj", _ALL),
    ("blk.{bid}.attn_output", "model.layers.{bid}.self_attn.o_proj", _ALL),
    # Llama-style blocks have one norm before the MLP, stored under "post_attention".
    ("blk.{bid}.ffn_norm", "model.layers.{bid}.post_attention_layernorm", _NOT_GEMMA2),
    # Gemma 2 has a norm after attention and a pre/post pair around the MLP.
    ("blk.{bid}.post_attention_norm", "model.layers.{bid}.post_attention_layernorm", ("gemma2",)),
    ("blk.{bid}.ffn_norm", "model.layers.{bid}.pre_feedforward_layernorm", ("gemma2",)),
    ("blk.{bid}.post_ffw_norm", "model.layers.{bid}.post_feedforward_layernorm", ("gemma2",)),
    ("blk.{bid}.ffn_gate", "model.layers.{bid}.mlp.gate_proj", _ALL),
    ("blk.{bid}.ffn_up", "model.layers.{bid}.mlp.up_proj", _ALL),
    ("blk.{bid}.ffn_down", "model.layers.{bid}.mlp.down_proj", _ALL),
)

# HF tensors that carry no weights llama.cpp needs (recomputed buffers).
SKIPPED_SUFFIXES = ("rotary_emb.inv_freq",)


@functools.lru_cache(maxsize=None)
def tensor_names(family: str, n_blocks: int) -> types.MappingProxyType[str, str]:
    """Flat HF base name (no .weight/.bias) -> GGUF base name for one family and depth."""
    if family not in FAMILIES:
        raise KeyError(family)
    flat: dict[str, str] = {}
    for gguf_name, hf_name, families in TENSORS:
        if family not in families:
            continue
        blocks = range(n_blocks) if "{bid}" in hf_name else [None]
        for bid in blocks:
            flat[hf_name.format(bid=bid)] = gguf_name.format(bid=bid)
    return types.MappingProxyType(flat)


def gguf_tensor_name(hf_name: str, family: str, n_blocks: int) -> str | None:
    """`model.layers.3.self_attn.q_proj.weight` -> `blk.3.attn_q.weight`; None for skipped tensors."""
    if hf_name.endswith(SKIPPED_SUFFIXES):
        return None
    base, _, suffix = hf_name.rpartition(".")
    table = tensor_names(family, n_blocks)
    if base not in table:
        raise KeyError(hf_name)
    return f"{table[base]}.{suffix}"


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
