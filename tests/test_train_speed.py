"""The fused LoRA projection (train/speed.py) computes what peft's LoRA Linear does, gradients included."""

from __future__ import annotations

import pytest
import torch

from subjectlm.train import checkpointing
from subjectlm.train.checkpointing import checkpoint_kwargs
from subjectlm.train.speed import fuse_lora, fused_lora_linear, keep_mask


def _lora_model(model_dir, dropout: float, fused: bool, checkpoint: str | None = None):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, target_modules="all-linear"))
    for name, param in model.named_parameters():  # B starts at zero: make the LoRA branch count
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.05)
    if fused:
        assert fuse_lora(model) == 14  # 2 layers x (q k v o gate up down)
    if checkpoint:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=checkpoint_kwargs(checkpoint))
    return model.train()


def _loss_and_grads(model, seed: int = 2):
    ids = torch.randint(0, 1000, (2, 24), generator=torch.Generator().manual_seed(1))
    torch.manual_seed(seed)
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("model_fixture", ["tiny_llama_dir", "tiny_qwen2_dir"])
def test_fused_lora_without_dropout_matches_peft(request, model_fixture):
    model_dir = request.getfixturevalue(model_fixture)  # qwen2: q/k/v with a bias
    loss, grads = _loss_and_grads(_lora_model(model_dir, 0.0, fused=False))
    fused_loss, fused_grads = _loss_and_grads(_lora_model(model_dir, 0.0, fused=True))
    assert fused_loss == pytest.approx(loss, rel=1e-5)
    assert grads.keys() == fused_grads.keys() and len(grads) == 28
    for name in grads:
        torch.testing.assert_close(fused_grads[name], grads[name], rtol=1e-4, atol=1e-6, msg=name)


def test_fused_lora_in_eval_mode_has_no_dropout(tiny_llama_dir):
    ids = torch.randint(0, 1000, (1, 16), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        plain = _lora_model(tiny_llama_dir, 0.3, fused=False).eval()(input_ids=ids).logits
        fused = _lora_model(tiny_llama_dir, 0.3, fused=True).eval()(input_ids=ids).logits
    torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-5)


def _with_mask(x, weight, bias, a, b, scaling, p, seed):
    """The plain formula with the mask fused_lora_linear draws from the same seed."""
    torch.manual_seed(seed)
    keep, kept = keep_mask(x.reshape(-1, x.shape[-1]).shape, p, x.device)
    keep = keep.reshape(x.shape)
    return x @ weight.t() + bias + scaling * ((x * keep / kept) @ a.t()) @ b.t(), keep


def test_keep_mask_keeps_one_minus_p():
    torch.manual_seed(0)
    keep, kept = keep_mask(torch.Size([1000, 1000]), 0.05, torch.device("cpu"))
    assert keep.dtype == torch.uint8 and keep.shape == (1000, 1000)
    assert set(keep.unique().tolist()) == {0, 1}
    assert kept == pytest.approx(0.95, abs=1 / 65536)
    assert keep.float().mean().item() == pytest.approx(kept, abs=0.002)  # 1e6 draws: sd 0.0002
    rows = keep.float().mean(1)
    assert rows.std().item() == pytest.approx((kept * (1 - kept) / 1000) ** 0.5, rel=0.2)  # independent draws


def test_fused_lora_with_dropout_gives_the_plain_formulas_gradients():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 12, generator=gen, requires_grad=True)
    weight, bias = torch.randn(7, 12, generator=gen), torch.randn(7, generator=gen)
    a = torch.randn(4, 12, generator=gen, requires_grad=True)
    b = torch.randn(7, 4, generator=gen, requires_grad=True)
    torch.manual_seed(9)
    out = fused_lora_linear(x, weight, bias, a, b, 2.0, 0.4)
    grads = torch.autograd.grad((out * out).sum(), (x, a, b))
    expected, keep = _with_mask(x, weight, bias, a, b, 2.0, 0.4, seed=9)
    assert 0 < keep.float().mean() < 1  # some elements really were dropped
    torch.testing.assert_close(out, expected)
    for got, want in zip(grads, torch.autograd.grad((expected * expected).sum(), (x, a, b))):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)


def test_fused_lora_refuses_a_trainable_base_weight():
    x, w = torch.randn(2, 4), torch.randn(3, 4, requires_grad=True)
    with pytest.raises(ValueError, match="frozen"):
        fused_lora_linear(x, w, None, torch.randn(2, 4), torch.randn(3, 2), 1.0, 0.0)


@pytest.mark.parametrize("mode", ["full", "selective"])
def test_fused_lora_with_dropout_under_checkpointing_matches_no_checkpointing(tiny_llama_dir, monkeypatch, mode):
    """Recompute redraws the same dropout masks and adds the LoRA product once, not twice."""
    monkeypatch.setattr(checkpointing, "MIN_SAVED_DIM", 32)  # the tiny model's projections are 64 wide, r=4
    loss, grads = _loss_and_grads(_lora_model(tiny_llama_dir, 0.1, fused=True))
    ck_loss, ck_grads = _loss_and_grads(_lora_model(tiny_llama_dir, 0.1, fused=True, checkpoint=mode))
    assert ck_loss == pytest.approx(loss, rel=1e-6)
    for name in grads:
        torch.testing.assert_close(ck_grads[name], grads[name], rtol=1e-4, atol=1e-6, msg=name)


def test_fused_lora_under_bf16_autocast_computes_in_bf16_like_peft(tiny_llama_dir):
    ids = torch.randint(0, 1000, (1, 16), generator=torch.Generator().manual_seed(3))
    seen = {}
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        plain = _lora_model(tiny_llama_dir, 0.0, fused=False).eval()(input_ids=ids).logits.float()
        model = _lora_model(tiny_llama_dir, 0.0, fused=True).eval()
        q = model.base_model.model.model.layers[0].self_attn.q_proj
        q.register_forward_hook(lambda mod, args, out: seen.update(dtype=out.dtype))  # returns None: output kept
        fused = model(input_ids=ids).logits.float()
    assert seen["dtype"] == torch.bfloat16
    torch.testing.assert_close(fused, plain, rtol=0.05, atol=0.05)
