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
alone keeps it invisible to the positions we read; no mask is needed. Or packed (`PackedRows`, letter
mode): a batch's questions end to end in one row of batch 1 with no padding at all, each question's
own part causal over its own span; the prefix part is unchanged (every query sees the whole prefix).

A second level, for cloze scoring (`question_kv`): the rows are a question's options, and each row
also attends to its own question's tokens, computed once per question (a batch of questions whose
cache holds only their own keys/values). Each row reads its question's keys through an index
(`rows`), right-padded question keys are masked by length, and the three parts (subject prefix,
question, the option's own tokens) merge by log-sum-exp into one softmax, as two do.

`SHARED_PREFIX` is registered as an attention implementation. Called without `prefix_kv` (the
prefix's own forward, generation) it is plain SDPA with transformers' usual masks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class QuestionKV:
    """The second prefix level: per layer (keys, values) [Q, Hkv, L, D] of Q right-padded questions,
    `rows` [B] the question of each row, `lengths` [Q] each question's real length."""

    layers: list[tuple[torch.Tensor, torch.Tensor]]
    rows: torch.Tensor
    lengths: torch.Tensor


@dataclass
class PackedRows:
    """Rows packed end to end into one sequence (batch 1, no padding): `bounds` holds each row's
    (start, end) in it. Each row's own tokens attend causally to that row's tokens only."""

    bounds: list[tuple[int, int]]


SHARED_PREFIX = "subjectlm_shared_prefix"


def shared_prefix_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                            attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                            prefix_kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
                            question_kv: QuestionKV | None = None, packed: PackedRows | None = None,
                            **kwargs: Any) -> tuple[torch.Tensor, None]:
    """query [B, H, S, D], key/value [B, Hkv, S, D]; prefix_kv[layer] = keys, values [1, Hkv, P, D];
    question_kv optional (see QuestionKV); packed: B is 1 and holds several rows (see PackedRows).
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
    if packed is None:
        out_own, lse_own = _attention_with_lse(query, own_keys, own_values, True, scale)
    else:  # each packed row is causal over its own span; the spans are short, one kernel call each
        spans = [_attention_with_lse(query[:, :, a:e], own_keys[:, :, a:e], own_values[:, :, a:e], True, scale)
                 for a, e in packed.bounds]
        out_own, lse_own = torch.cat([o for o, _ in spans], 2), torch.cat([lse for _, lse in spans], 2)
    parts = [(out_prefix, lse_prefix), (out_own, lse_own)]
    if question_kv is not None:
        parts.append(_question_part(query, question_kv, module.layer_idx, scale))
    return _merge(parts).transpose(1, 2).contiguous(), None


def _merge(parts: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """One softmax over all parts: weight each part's output by its share of the total mass."""
    top = parts[0][1]
    for _, lse in parts[1:]:
        top = torch.maximum(top, lse)
    weights = [(lse - top).exp() for _, lse in parts]
    total = sum(weights)
    merged = sum(out * (w / total).unsqueeze(-1) for (out, _), w in zip(parts, weights))
    return merged.to(parts[0][0].dtype)  # the CPU kernel's lse is float32: a bf16 model wants bf16 back


def _question_part(query: torch.Tensor, question_kv: QuestionKV, layer: int,
                   scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's queries against its own question's keys (all of them: the question precedes the option)."""
    keys, values = question_kv.layers[layer]
    keys, values = keys[question_kv.rows], values[question_kv.rows]  # [B, Hkv, L, D]: a few hundred tokens
    b, h, s, d = query.shape
    hkv, length = keys.shape[1], keys.shape[2]
    g = h // hkv
    folded = query.reshape(b, hkv, g * s, d)  # the g query heads of a key head share its keys
    lengths = question_kv.lengths[question_kv.rows]
    padded = torch.arange(length, device=keys.device).unsqueeze(0) >= lengths.unsqueeze(1)  # [B, L]
    scores = torch.matmul(folded, keys.transpose(-1, -2)) * scale
    scores = scores.masked_fill(padded[:, None, None, :], float("-inf"))
    lse = scores.logsumexp(-1)
    out = torch.matmul((scores - lse.unsqueeze(-1)).exp(), values)
    return out.reshape(b, h, s, d), lse.reshape(b, h, s)


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
