"""Chunked cross-entropy equals the plain one, value and gradient, across chunks and ignored rows."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from subjectlm.train import loss as L


@pytest.mark.parametrize("chunk_rows", [1, 3, 64])
def test_chunked_cross_entropy_equals_plain(monkeypatch, chunk_rows):
    vocab, dim, rows = 50, 8, 11
    monkeypatch.setattr(L, "CHUNK_ELEMENTS", chunk_rows * vocab)
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(vocab, dim, generator=g)
    targets = torch.randint(0, vocab, (rows,), generator=g)
    targets[[0, 4, 5, 6]] = L.IGNORE  # with 3-row chunks, rows 3..5 hold one label and 6..8 two
    hidden = torch.randn(rows, dim, generator=g, requires_grad=True)
    plain_hidden = hidden.detach().clone().requires_grad_()

    got = L.chunked_cross_entropy(hidden, weight, targets)
    want = F.cross_entropy(plain_hidden @ weight.t(), targets, ignore_index=L.IGNORE, reduction="sum")
    (got * 0.5).backward()
    (want * 0.5).backward()
    assert torch.allclose(got, want, atol=1e-5)
    assert torch.allclose(hidden.grad, plain_hidden.grad, atol=1e-6)
    assert hidden.grad[0].abs().sum() == 0  # an ignored row gets no gradient


def test_a_trained_head_is_refused():
    with pytest.raises(ValueError, match="frozen"):
        L.chunked_cross_entropy(torch.zeros(2, 4), torch.zeros(5, 4, requires_grad=True), torch.zeros(2, dtype=torch.long))


def test_only_a_frozen_plain_head_takes_the_chunked_path(tiny_llama_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir))
    lora = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj"]))
    assert L.frozen_linear_head(lora) is lora.get_base_model()
    with L.hidden_instead_of_logits(lora.get_base_model()) as head:
        hidden = lora(input_ids=torch.tensor([[1, 2, 3]])).logits
    assert hidden.shape[-1] == base.config.hidden_size and head.shape[0] == base.config.vocab_size
    assert isinstance(lora.get_base_model().get_output_embeddings(), torch.nn.Linear)  # restored
    full = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir))  # full fine-tuning: the head trains
    assert L.frozen_linear_head(full) is None
    saved = get_peft_model(AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir)),
                           LoraConfig(r=2, target_modules=["q_proj"], modules_to_save=["lm_head"]))
    assert L.frozen_linear_head(saved) is None
