"""Selective activation checkpointing: keep what is costly to recompute, recompute what is cheap to store.

Full checkpointing keeps only each decoder layer's input and reruns the whole layer in backward:
one more forward pass, a third of a LoRA step's time. Most of a layer's activation memory is not
in its matmul outputs, though, but in what surrounds them: norms, RoPE'd copies, the SiLU and the
product of the MLP, residual sums, LoRA dropout copies of every projection's input. So the
"selective" mode saves the outputs of the base model's matmuls and of attention, and recomputes
everything else in backward: the elementwise ops and LoRA's rank-r matmuls (r x d per token,
small next to the d x d base projections). Memory lands between full checkpointing and none;
time is close to none (measured in bench/sft_throughput.py). torch's own selective checkpoint
(`create_selective_checkpoint_contexts`) does the bookkeeping; this file is only the policy.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from torch.utils.checkpoint import CheckpointPolicy, create_selective_checkpoint_contexts

from subjectlm.train.config import CHECKPOINT_MODES

MATMULS = {torch.ops.aten.mm.default, torch.ops.aten.addmm.default, torch.ops.aten.bmm.default}
# Narrower than this on either side is a LoRA factor (rank r), cheap to redo.
MIN_SAVED_DIM = 128


def _is_attention(func: Any) -> bool:
    return "scaled_dot_product" in str(func)


def save_matmuls_and_attention(ctx: Any, func: Any, *args: Any, **kwargs: Any) -> CheckpointPolicy:
    if _is_attention(func):
        return CheckpointPolicy.MUST_SAVE
    if func in MATMULS:
        a, b = args[-2], args[-1]  # addmm(bias, a, b), mm(a, b), bmm(a, b)
        if min(a.shape[-1], b.shape[-1]) >= MIN_SAVED_DIM:
            return CheckpointPolicy.MUST_SAVE
    return CheckpointPolicy.PREFER_RECOMPUTE


def checkpoint_kwargs(mode: str) -> dict[str, Any]:
    """Keyword arguments for torch.utils.checkpoint (via model.gradient_checkpointing_enable)."""
    if mode not in CHECKPOINT_MODES:
        raise ValueError(f"gradient_checkpointing_mode: {mode!r} is not one of {', '.join(CHECKPOINT_MODES)}")
    kwargs: dict[str, Any] = {"use_reentrant": False}
    if mode == "selective":
        kwargs["context_fn"] = partial(create_selective_checkpoint_contexts, save_matmuls_and_attention)
    return kwargs
