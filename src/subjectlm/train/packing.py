"""Batches without wasted compute, and attention that never crosses an example boundary.

`PackedCollator` lays a micro-batch's examples end to end in one row (no padding at all):
position ids restart at 0 for every example and `cu_seq_lens_q` marks the boundaries.
`varlen_sdpa` (registered as attention implementation "subjectlm_varlen") then runs causal
attention on each example's slice separately, so the cost is sum(L_i^2), not (sum L_i)^2 as
with one block-diagonal mask, and no token sees another example. With any other attention
implementation transformers builds the block-diagonal mask from the restarting position ids,
which is equally exact, only slower. Labels come pre-shifted (`shift_labels`, -100 at each
example's last token) so no target ever crosses a boundary either.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from subjectlm.train.tokenize import IGNORE

VARLEN = "subjectlm_varlen"


def _shifted(labels: list[int]) -> list[int]:
    return labels[1:] + [IGNORE]


class PackedCollator:
    """examples -> one row: input_ids, position_ids, labels, shift_labels [1, T]; cu_seq_lens_q [n+1]."""

    def __call__(self, examples: list[dict[str, list[int]]]) -> dict[str, Any]:
        ids, pos, labels, shift, bounds = [], [], [], [], [0]
        for ex in examples:
            n = len(ex["input_ids"])
            ids += ex["input_ids"]
            pos += range(n)
            labels += ex["labels"]
            shift += _shifted(ex["labels"])
            bounds.append(bounds[-1] + n)
        return {
            "input_ids": torch.tensor([ids]),
            "position_ids": torch.tensor([pos]),
            "labels": torch.tensor([labels]),
            "shift_labels": torch.tensor([shift]),
            "cu_seq_lens_q": torch.tensor(bounds, dtype=torch.int32),
            "max_length_q": max(bounds[i + 1] - bounds[i] for i in range(len(examples))),
        }


class PaddedCollator:
    """examples -> right-padded rows with an attention mask (used with length-grouped batches)."""

    def __init__(self, pad_token_id: int):
        self.pad = pad_token_id

    def __call__(self, examples: list[dict[str, list[int]]]) -> dict[str, Any]:
        width = max(len(ex["input_ids"]) for ex in examples)
        ids, mask, labels, shift = [], [], [], []
        for ex in examples:
            n, gap = len(ex["input_ids"]), width - len(ex["input_ids"])
            ids.append(ex["input_ids"] + [self.pad] * gap)
            mask.append([1] * n + [0] * gap)
            labels.append(ex["labels"] + [IGNORE] * gap)
            shift.append(_shifted(ex["labels"]) + [IGNORE] * gap)
        return {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask),
                "labels": torch.tensor(labels), "shift_labels": torch.tensor(shift)}


def varlen_sdpa(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                cu_seq_lens_q: torch.Tensor | None = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """Causal SDPA per packed example. query [B, H, T, D], key/value [B, Hkv, T, D] -> [B, T, H, D]."""
    if cu_seq_lens_q is None or query.shape[0] != 1:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        if attention_mask is None and query.shape[2] > 1 and key.shape[2] == query.shape[2]:
            kwargs.pop("is_causal", None)
            return sdpa_attention_forward(module, query, key, value, None, dropout=dropout, scaling=scaling,
                                          is_causal=True, **kwargs)
        if attention_mask is not None and attention_mask.dim() == 2:
            # A 2D padding mask reaches us because this implementation builds no 4D mask: make it causal.
            t = query.shape[2]
            causal = torch.ones(t, t, dtype=torch.bool, device=query.device).tril()
            attention_mask = causal[None, None] & attention_mask[:, None, None, :].bool()
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    gqa = query.shape[1] != key.shape[1]
    bounds = cu_seq_lens_q.tolist()
    outs = [
        F.scaled_dot_product_attention(query[:, :, a:b], key[:, :, a:b], value[:, :, a:b], is_causal=True,
                                       dropout_p=dropout, scale=scaling, enable_gqa=gqa)
        for a, b in zip(bounds[:-1], bounds[1:])
    ]
    return torch.cat(outs, dim=2).transpose(1, 2).contiguous(), None


def register_varlen() -> str:
    from transformers import AttentionInterface

    AttentionInterface.register(VARLEN, varlen_sdpa)
    return VARLEN
