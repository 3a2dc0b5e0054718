"""A HF config.json as GGUF hyperparameter key/values, per family.

The keys and their meaning follow llama.cpp (llama-cpp-python 0.3.36's copy): `src/llama-model.cpp`
reads the common ones, `src/models/<arch>.cpp`'s `load_arch_hparams` the family's own. Where llama.cpp
cannot run what the config asks for (a rope kind, an attention scale, a routing rule it does not
implement), the export stops with the reason instead of writing a file that computes something else.
"""

from __future__ import annotations

import math
from typing import Any

from subjectlm.errors import UserError


class HParamsError(UserError, ValueError):
    pass


def find(config: dict[str, Any], *keys: str, default: Any = None) -> Any:
    """The first of `keys` present in config (configs name the same thing differently across versions)."""
    for key in keys:
        if config.get(key) is not None:
            return config[key]
    return default


def rope_params(config: dict[str, Any], layer_type: str | None = None) -> dict[str, Any]:
    """transformers 5 keeps rope settings in `rope_parameters` (per layer type for Gemma 3); older
    configs in rope_theta/rope_scaling."""
    params = dict(config.get("rope_parameters") or {})
    if layer_type is not None and isinstance(params.get(layer_type), dict):
        params = dict(params[layer_type])
    if "rope_theta" not in params and "rope_theta" in config:
        params["rope_theta"] = config["rope_theta"]
    scaling = config.get("rope_scaling") or {}
    for key, value in scaling.items():
        params.setdefault("rope_type" if key == "type" else key, value)
    params.setdefault("rope_type", "default")
    params.setdefault("rope_theta", 10000.0)
    return params


def llama3_rope_factors(rope: dict[str, Any], head_dim: int):
    """Per-frequency divisors for Llama 3.1's rope scaling (llama.cpp reads them as `rope_freqs`)."""
    import numpy as np

    base, factor = rope["rope_theta"], rope["factor"]
    low, high = rope.get("low_freq_factor", 1.0), rope.get("high_freq_factor", 4.0)
    old_ctx = rope.get("original_max_position_embeddings", 8192)
    freqs = 1.0 / (base ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    out = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < old_ctx / high:
            out.append(1.0)
        elif wavelen > old_ctx / low:
            out.append(factor)
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def head_dim(config: dict[str, Any]) -> int:
    return config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]


def write_hparams(writer, config: dict[str, Any], family: str) -> list[tuple[str, Any]]:
    """Model key/values; returns extra tensors the hparams imply (rope factor tables)."""
    n_head = config["num_attention_heads"]
    dim = head_dim(config)
    writer.add_context_length(config.get("max_position_embeddings", 2048))
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(n_head)
    writer.add_head_count_kv(config.get("num_key_value_heads") or n_head)
    writer.add_key_length(dim)
    writer.add_value_length(dim)
    writer.add_layer_norm_rms_eps(config.get("rms_norm_eps", 1e-6))
    if family == "phi3":
        return _phi3(writer, config, dim)
    writer.add_rope_dimension_count(dim)
    if family in ("gemma3", "gemma3_text"):
        return _gemma3(writer, config, dim)
    extra = _rope_scaling(writer, rope_params(config), dim)
    if family == "gemma2":
        check_query_scale(config, dim, "gemma2", layers_of_27b=46)
        writer.add_attn_logit_softcapping(float(config.get("attn_logit_softcapping") or 50.0))
        writer.add_final_logit_softcapping(float(config.get("final_logit_softcapping") or 30.0))
        writer.add_sliding_window(int(config.get("sliding_window") or 4096))
    if family in ("qwen2", "qwen3", "qwen3_moe") and config.get("use_sliding_window"):
        raise HParamsError(f"{family} with use_sliding_window: true is not supported (llama.cpp's {family} "
                           "attends to the whole context)")
    if family == "qwen3_moe":
        _qwen3_moe(writer, config)
    return extra


def _rope_scaling(writer, rope: dict[str, Any], dim: int) -> list[tuple[str, Any]]:
    import gguf

    writer.add_rope_freq_base(float(rope["rope_theta"]))
    kind = rope["rope_type"]
    if kind == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(rope["factor"]))
    elif kind == "yarn":
        writer.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        writer.add_rope_scaling_factor(float(rope["factor"]))
        writer.add_rope_scaling_orig_ctx_len(int(rope["original_max_position_embeddings"]))
    elif kind == "llama3":
        return [("rope_freqs.weight", llama3_rope_factors(rope, dim))]
    elif kind != "default":
        raise HParamsError(f"rope scaling {kind!r} is not supported by this exporter (default, linear, yarn, llama3)")
    return []


def check_query_scale(config: dict[str, Any], dim: int, family: str, layers_of_27b: int) -> None:
    """Gemma scales queries by 1/sqrt(query_pre_attn_scalar). llama.cpp takes no such key: its gemma2 and
    gemma3 (src/models/gemma2.cpp, gemma3.cpp) scale by 1/sqrt(head_dim), except for the 27B, which
    they know by its layer count (46 in Gemma 2, 62 in Gemma 3) and scale by 1/sqrt(hidden/heads), as
    gemma_pytorch's config does (Gemma 2 27B: 4608/32 = 144 with head_dim 128). Any other scalar would
    compute something else in llama.cpp, so it is refused."""
    scalar = config.get("query_pre_attn_scalar", dim)
    is_27b = config["num_hidden_layers"] == layers_of_27b
    expected = config["hidden_size"] // config["num_attention_heads"] if is_27b else dim
    if scalar != expected:
        size = f"{layers_of_27b}-layer (27B) models" if is_27b else f"models of other than {layers_of_27b} layers"
        raise HParamsError(f"{family}: query_pre_attn_scalar {scalar} is not supported by llama.cpp's {family} "
                           f"(for {size} it scales queries by 1/sqrt({expected}))")


def _qwen3_moe(writer, config: dict[str, Any]) -> None:
    """Expert counts and size. llama.cpp's qwen3moe (src/models/qwen3moe.cpp) routes every layer
    through softmax -> top-k -> renormalized weights; a config that asks otherwise is refused."""
    n_experts = find(config, "num_experts", "num_local_experts")
    if not n_experts:
        raise HParamsError("qwen3_moe: config.json has no num_experts")
    if not config.get("norm_topk_prob", False):
        raise HParamsError("qwen3_moe with norm_topk_prob: false is not supported: llama.cpp's qwen3moe always "
                           "renormalizes the top-k expert weights (Qwen3 MoE releases set it true)")
    if config.get("mlp_only_layers") or config.get("decoder_sparse_step", 1) != 1:
        raise HParamsError("qwen3_moe with dense layers (mlp_only_layers / decoder_sparse_step) is not supported: "
                           "llama.cpp's qwen3moe expects experts in every layer")
    writer.add_expert_count(int(n_experts))
    writer.add_expert_used_count(int(config["num_experts_per_tok"]))
    writer.add_expert_feed_forward_length(int(config["moe_intermediate_size"]))


def _gemma3(writer, config: dict[str, Any], dim: int) -> list[tuple[str, Any]]:
    """Gemma 3 interleaves sliding-window layers (local rope base, no scaling) with full-attention
    layers (global rope base, maybe linear scaling). llama.cpp (src/models/gemma3.cpp) reads the
    per-layer pattern, `rope.freq_base_swa` for the sliding layers and scales q as check_query_scale
    says."""
    n_layers = config["num_hidden_layers"]
    check_query_scale(config, dim, "gemma3", layers_of_27b=62)
    if config.get("attn_logit_softcapping") is not None:
        raise HParamsError("gemma3 with attn_logit_softcapping is not supported by llama.cpp's gemma3")
    if config.get("use_bidirectional_attention"):
        raise HParamsError("gemma3 with use_bidirectional_attention (an embedding model) is not a chat model")
    if config.get("final_logit_softcapping") is not None:
        writer.add_final_logit_softcapping(float(config["final_logit_softcapping"]))
    layer_types = config.get("layer_types")
    if layer_types is None:
        pattern = find(config, "sliding_window_pattern", "_sliding_window_pattern", default=6)
        layer_types = ["full_attention" if (i + 1) % pattern == 0 else "sliding_attention" for i in range(n_layers)]
    if len(layer_types) != n_layers or set(layer_types) - {"sliding_attention", "full_attention"}:
        raise HParamsError(f"gemma3: layer_types {layer_types!r} should name each of {n_layers} layers "
                           "sliding_attention or full_attention")
    swa = [t == "sliding_attention" for t in layer_types]
    if any(swa):
        writer.add_sliding_window(int(config.get("sliding_window") or 4096))
        writer.add_sliding_window_pattern(swa)
        local = rope_params(config, "sliding_attention")
        if "rope_local_base_freq" in config:  # transformers 4.x configs
            local = {"rope_theta": config["rope_local_base_freq"], "rope_type": "default"}
        if local["rope_type"] != "default":
            raise HParamsError(f"gemma3: rope scaling {local['rope_type']!r} on sliding layers is not supported")
        writer.add_rope_freq_base_swa(float(local["rope_theta"]))
    glob = rope_params(config, "full_attention")
    if glob["rope_type"] not in ("default", "linear"):
        raise HParamsError(f"gemma3: rope scaling {glob['rope_type']!r} is not supported (default, linear)")
    return _rope_scaling(writer, glob, dim)


def _phi3(writer, config: dict[str, Any], dim: int) -> list[tuple[str, Any]]:
    """Phi-3 ropes the first partial_rotary_factor of each head (NEOX layout, as HF); long-context
    models (Phi-3.5) use LongRoPE: per-frequency short and long factor tables, chosen by llama.cpp
    from the context size as transformers chooses them from the sequence length."""
    import numpy as np

    rope = rope_params(config)
    n_rot = int(rope.get("partial_rotary_factor", config.get("partial_rotary_factor", 1.0)) * dim)
    writer.add_rope_dimension_count(n_rot)
    writer.add_rope_freq_base(float(rope["rope_theta"]))
    n_ctx = config.get("max_position_embeddings", 4096)
    orig_ctx = rope.get("original_max_position_embeddings") or config.get("original_max_position_embeddings") or n_ctx
    writer.add_rope_scaling_orig_ctx_len(int(orig_ctx))
    # llama.cpp's phi3 reads this but runs without a sliding window (src/models/phi3.cpp), as its converter
    # writes it; transformers applies the window, so the two differ only past sliding_window tokens.
    writer.add_sliding_window(int(config.get("sliding_window") or 0))
    kind = rope["rope_type"]
    if kind == "default":
        return []
    if kind not in ("longrope", "su"):
        raise HParamsError(f"phi3: rope scaling {kind!r} is not supported (default, longrope)")
    long, short = rope.get("long_factor"), rope.get("short_factor")
    if not long or not short or len(long) != n_rot // 2 or len(short) != n_rot // 2:
        raise HParamsError(f"phi3 longrope: long_factor and short_factor need {n_rot // 2} values each")
    factor = rope.get("factor") or n_ctx / orig_ctx
    attn_factor = rope.get("attention_factor")
    if attn_factor is None:
        attn_factor = math.sqrt(1 + math.log(factor) / math.log(orig_ctx)) if factor > 1 else 1.0
    writer.add_rope_scaling_attn_factors(float(attn_factor))
    return [("rope_factors_long.weight", np.array(long, dtype=np.float32)),
            ("rope_factors_short.weight", np.array(short, dtype=np.float32))]
