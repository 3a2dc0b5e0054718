"""Attention for a batch of questions that all continue one shared prefix, without copying the prefix.

The usual way to reuse a prefix is to repeat its KV cache to the batch size and let every layer
concatenate each row's new keys onto it: per layer and per batch that copies the prefix's keys and
values B times (and SDPA's GQA path repeats them once more per query head), and it keeps B copies
of the prefix cache alive. Here the prefix keys/values stay at batch 1. Each layer scores the
queries of all rows against them in one matrix product (batch folded into the rows), scores each
row's own tokens causally, and merges the two by their log-sum-exps, which is one softmax over
both parts. The result is the same attention, so log-probs equal the full prompt's (the test says
within 1e-4). On CPU both parts run in SDPA's fused flash kernel, which also returns the log-sum-exp.

Questions are right-padded: padding sits after every real token of its row, so causal attention
alone keeps it invisible to the positions we read; no mask is needed.

`SHARED_PREFIX` is registered as an attention implementation. Called without `prefix_kv` (the
prefix's own forward, generation) it is plain SDPA with transformers' usual masks.
"""

from __future__ import annotations

from typing import Any

import torch

SHARED_PREFIX = "subjectlm_shared_prefix"


def shared_prefix_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                            attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                            prefix_kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
                            **kwargs: Any) -> tuple[torch.Tensor, None]:
    """query [B, H, S, D], key/value [B, Hkv, S, D]; prefix_kv[layer] = keys, values [1, Hkv, P, D].
    Returns [B, S, H, D]."""
    if prefix_kv is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    prefix_keys, prefix_values = prefix_kv[module.layer_idx]
    b, h, s, d = query.shape
    hkv = key.shape[1]
    g = h // hkv
    scale = scaling if scaling is not None else d ** -0.5
    # Prefix part: every query of every row sees every prefix position (no mask), so batch and the g
    # query heads of a key head fold into one long query axis against the batch-1 prefix.
    folded = query.view(b, hkv, g, s, d).transpose(0, 1).reshape(1, hkv, b * g * s, d)
    out_prefix, lse_prefix = _attention_with_lse(folded, prefix_keys, prefix_values, False, scale)
    out_prefix = out_prefix.reshape(hkv, b, g, s, d).transpose(0, 1).reshape(b, h, s, d)
    lse_prefix = lse_prefix.reshape(hkv, b, g, s).transpose(0, 1).reshape(b, h, s)
    # Own part: causal over the row's own tokens (short), key heads repeated to the query heads.
    own_keys = key.repeat_interleave(g, dim=1) if g > 1 else key
    own_values = value.repeat_interleave(g, dim=1) if g > 1 else value
    out_own, lse_own = _attention_with_lse(query, own_keys, own_values, True, scale)
    # One softmax over both parts: weight each part's output by its share of the total mass.
    top = torch.maximum(lse_prefix, lse_own)
    w_prefix, w_own = (lse_prefix - top).exp(), (lse_own - top).exp()
    total = w_prefix + w_own
    out = out_prefix * (w_prefix / total).unsqueeze(-1) + out_own * (w_own / total).unsqueeze(-1)
    return out.transpose(1, 2).contiguous(), None


def _attention_with_lse(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, causal: bool,
                        scale: float, fused: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention output [B, H, L, D] and the log-sum-exp of its scores [B, H, L]. On CPU this is the fused
    flash kernel behind SDPA, which returns both; elsewhere the same sums spelled out."""
    if fused is None:
        fused = query.device.type == "cpu"
    if fused:
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            query, key, value, 0.0, causal, scale=scale)
        return out, lse
    scores = torch.matmul(query, key.transpose(-1, -2)) * scale
    if causal:
        n = query.shape[2]
        scores = scores.masked_fill(torch.ones(n, n, dtype=torch.bool, device=query.device).triu(1), float("-inf"))
    lse = scores.logsumexp(-1)
    return torch.matmul((scores - lse.unsqueeze(-1)).exp(), value), lse


def register_shared_prefix() -> str:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(SHARED_PREFIX, shared_prefix_attention)
    AttentionMaskInterface.register(SHARED_PREFIX, sdpa_mask)  # the SDPA fallback gets SDPA's masks
    return SHARED_PREFIX


def plain_cache_layers(cache: Any) -> list[Any] | None:
    """The layers of a cache whose every layer is plain full attention (keys/values [batch, heads, seq, dim]);
    None if some layer is another kind (sliding window, linear attention)."""
    layers = getattr(cache, "layers", None)
    if not layers or any(type(layer).__name__ != "DynamicLayer" for layer in layers):
        return None
    return layers


def prefix_key_values(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
    """Per layer (keys, values) of a batch-1 prefix cache; None if it is not plain full attention:
    the caller then falls back to expanding the cache."""
    layers = plain_cache_layers(cache)
    return None if layers is None else [(layer.keys, layer.values) for layer in layers]
