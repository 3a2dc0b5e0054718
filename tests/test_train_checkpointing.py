"""Selective activation checkpointing gives exactly the gradients of no checkpointing, and does save matmuls."""

from __future__ import annotations

import pytest
import torch

from subjectlm.train import checkpointing
from subjectlm.train.checkpointing import checkpoint_kwargs


def _lora_grads(model_dir, kwargs):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.1, target_modules="all-linear"))
    if kwargs is not None:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    model.train()
    ids = torch.randint(0, 1000, (2, 24), generator=torch.Generator().manual_seed(1))
    torch.manual_seed(2)  # the same dropout masks in every run
    model(input_ids=ids, labels=ids).loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("mode", ["full", "selective"])
def test_checkpointing_gives_the_same_gradients(tiny_llama_dir, monkeypatch, mode):
    monkeypatch.setattr(checkpointing, "MIN_SAVED_DIM", 32)  # the tiny model's projections are 64 wide, r=4
    decisions = []
    policy = checkpointing.save_matmuls_and_attention

    def counting(ctx, func, *args, **kwargs):
        decision = policy(ctx, func, *args, **kwargs)
        decisions.append(decision)
        return decision

    monkeypatch.setattr(checkpointing, "save_matmuls_and_attention", counting)
    reference = _lora_grads(tiny_llama_dir, None)
    got = _lora_grads(tiny_llama_dir, checkpoint_kwargs(mode))
    assert reference.keys() == got.keys() and len(got) > 0
    for name in reference:
        assert torch.allclose(reference[name], got[name], atol=1e-6, rtol=1e-5), name
    if mode == "selective":
        saved = sum(d == checkpointing.CheckpointPolicy.MUST_SAVE for d in decisions)
        recomputed = sum(d == checkpointing.CheckpointPolicy.PREFER_RECOMPUTE for d in decisions)
        assert saved > 0 and recomputed > saved  # the base projections and attention kept, the rest redone
    else:
        assert decisions == []


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="gradient_checkpointing_mode"):
        checkpoint_kwargs("some")
