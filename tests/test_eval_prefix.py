"""Prefix reuse is exact: log-probs with the subject's shared prefix computed once equal full-prompt log-probs.

Uses real C-Eval subjects (5-shot prompts of ~2700 tokens) with tiny random models, fp32.
"""

from __future__ import annotations

import pytest
import torch

from conftest import CEVAL_DIR
from subjectlm.backends.hf import HFBackend
from subjectlm.backends.score_hf import HFScorer
from subjectlm.backends.score_tokens import TokenizerText, common_prefix_length
from subjectlm.eval.exam import prompts as P
from subjectlm.eval.exam.directory import read_exam

pytestmark = pytest.mark.skipif(not CEVAL_DIR.is_dir(), reason="../shared/ceval-exam not present")


def full_prompt_logprobs(backend: HFScorer, text: str, ids: list[int], add_special_tokens: bool = True) -> list[float]:
    """Reference: one forward over the whole prompt, no cache, no padding."""
    tokens = torch.tensor([backend.encode(text, add_special_tokens)])
    with torch.inference_mode():
        logits = backend.model(input_ids=tokens, logits_to_keep=1).logits[0, -1].float()
    return torch.log_softmax(logits, -1)[ids].tolist()


def _check_subjects(backend: HFScorer, subjects: list[str], with_prompt: bool = False, shots: int = 5) -> int:
    fmt, exams = read_exam(CEVAL_DIR, "ceval", "val", subjects)
    style = P.style(fmt)
    checked = 0
    for exam in exams:
        if with_prompt:
            texts = [backend.chat_prompt(P.chat_messages(style, exam.info.name, exam.dev[:shots], d)) for d in exam.docs]
        else:
            texts = [P.prompt(style, exam.info.name, exam.dev[:shots], d) for d in exam.docs]
        special = not with_prompt
        reused = backend.score_next(texts, P.continuations(style), add_special_tokens=special)
        seqs = [backend.encode(t, special) for t in texts]
        assert common_prefix_length(seqs) > 0.5 * min(len(s) for s in seqs)  # the shots really are shared
        for text, got in zip(texts, reused):
            ids = backend.continuation_ids(text, P.continuations(style))
            want = full_prompt_logprobs(backend, text, ids, special)
            assert max(abs(a - b) for a, b in zip(got, want)) <= 1e-4
            checked += 1
    return checked


def test_prefix_reuse_equals_full_prompt_llama(tiny_llama_dir):
    backend = HFBackend(str(tiny_llama_dir), dtype="fp32", device="cpu", batch_size=4).scorer
    assert backend.shared_prefix  # batches attend to one batch-1 copy of the prefix
    assert _check_subjects(backend, ["computer_network", "logic", "college_physics"]) == 19 + 22 + 19


def test_prefix_reuse_by_expanded_cache_equals_full_prompt(tiny_llama_dir):
    """The fallback for models where shared-prefix attention does not apply: the prefix cache repeated per batch."""
    backend = HFBackend(str(tiny_llama_dir), dtype="fp32", device="cpu", batch_size=4).scorer
    backend.shared_prefix = False
    assert _check_subjects(backend, ["logic"]) == 22


def test_prefix_reuse_equals_full_prompt_qwen2_odd_batches(tiny_qwen2_dir):
    backend = HFBackend(str(tiny_qwen2_dir), dtype="fp32", device="cpu", batch_size=3).scorer
    assert backend.shared_prefix
    assert _check_subjects(backend, ["high_school_geography"], shots=3) == 19


def test_prefix_reuse_with_chat_template_has_one_bos(tiny_llama_dir):
    backend = HFBackend(str(tiny_llama_dir), dtype="fp32", device="cpu", batch_size=8).scorer
    assert _check_subjects(backend, ["computer_network"], with_prompt=True, shots=2) == 19
    # The rendered chat, tokenized without special tokens, is exactly the template's own tokenization.
    messages = [{"role": "user", "content": "1+1=?\n答案："}]
    text = backend.chat_prompt(messages)
    reference = backend.tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
    reference = reference["input_ids"] if isinstance(reference, dict) or hasattr(reference, "keys") else reference
    assert backend.encode(text, add_special_tokens=False) == list(reference)


def test_letter_tokens_are_read_in_context(default_model_dir):
    """SmolLM2: "A" after "答案：" is the bare-letter token; MMLU's " A" after "Answer:" is a different one."""
    from subjectlm.models import load_tokenizer

    backend = TokenizerText(load_tokenizer(default_model_dir))
    ceval = backend.continuation_ids("1+1=?\nA. 1\nB. 2\nC. 3\nD. 4\n答案：", ["A", "B", "C", "D"])
    mmlu = backend.continuation_ids("1+1=?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer:", [" A", " B", " C", " D"])
    assert ceval == [backend.tokenizer.convert_tokens_to_ids(t) for t in "ABCD"]
    assert mmlu == [backend.tokenizer.convert_tokens_to_ids("Ġ" + t) for t in "ABCD"]
    assert set(ceval).isdisjoint(mmlu)


def test_common_prefix_length_leaves_each_a_token():
    assert common_prefix_length([[1, 2, 3], [1, 2, 4]]) == 2
    assert common_prefix_length([[1, 2], [1, 2, 3]]) == 1
    assert common_prefix_length([[5, 6, 7]]) == 2
    assert common_prefix_length([[1], [2]]) == 0


@pytest.mark.parametrize("fused", [True, False])
def test_shared_prefix_attention_equals_full_causal_attention(monkeypatch, fused):
    """Rows of different own lengths (right-padded) after one prefix, GQA 6 query heads on 2 key heads."""
    import torch.nn.functional as F

    from subjectlm.backends import shared_prefix as SP

    if not fused:
        original = SP._attention_with_lse
        monkeypatch.setattr(SP, "_attention_with_lse", lambda *a, **k: original(*a, **k, fused=False))
    g = torch.Generator().manual_seed(0)
    b, h, hkv, p, s, d = 3, 6, 2, 40, 7, 16
    prefix_k, prefix_v = torch.randn(1, hkv, p, d, generator=g), torch.randn(1, hkv, p, d, generator=g)
    q = torch.randn(b, h, s, d, generator=g)
    k, v = torch.randn(b, hkv, s, d, generator=g), torch.randn(b, hkv, s, d, generator=g)
    layer = torch.nn.Module()
    layer.layer_idx = 0
    got, _ = SP.shared_prefix_attention(layer, q, k, v, None, scaling=0.3, prefix_kv=[(prefix_k, prefix_v)])
    keys = torch.cat([prefix_k.expand(b, -1, -1, -1), k], 2).repeat_interleave(h // hkv, 1)
    values = torch.cat([prefix_v.expand(b, -1, -1, -1), v], 2).repeat_interleave(h // hkv, 1)
    mask = torch.ones(s, p + s, dtype=torch.bool).tril(p)  # all of the prefix, then causal
    want = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=0.3).transpose(1, 2)
    assert got.shape == (b, s, h, d)
    assert torch.allclose(got, want, atol=1e-5)
