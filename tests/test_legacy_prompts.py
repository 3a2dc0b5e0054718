"""`--prompt_style cla3`: the old scripts/ceval prompts byte for byte, and its letter scoring.

The golden strings are written out by hand from the format of Chinese-LLaMA-Alpaca-3's
scripts/ceval/llama_evaluator.py (system/user/assistant formats, the 好的… first reply), so a
changed character fails here.
"""

from __future__ import annotations

import pytest

from subjectlm.compat.cla3 import prompts as C
from subjectlm.eval.exam.prompts import ExamDoc

SYS = "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant. 你是一个乐于助人的助手。<|eot_id|>"
HEADER = "以下是中国关于逻辑学考试的单项选择题，请选出其中的正确答案。\n\n"
QUESTION = ExamDoc("logic", "7", "所有S都是P，则", ("有的P是S", "P都是S", "S不是P", "无法判断"), "A")
SHOTS = [ExamDoc("logic", str(i), f"题{i}", (f"a{i}", f"b{i}", f"c{i}", f"d{i}"), "ABCDA"[i]) for i in range(5)]


def _item(i: int) -> str:
    return f"题{i}\nA. a{i}\nB. b{i}\nC. c{i}\nD. d{i}\n答案："


Q = "所有S都是P，则\nA. 有的P是S\nB. P都是S\nC. S不是P\nD. 无法判断\n答案："


def _user(text: str) -> str:
    return f"<|start_header_id|>user<|end_header_id|>\n\n{text}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"


def test_zero_shot_without_prompt():
    assert C.prompt("逻辑学", SHOTS, QUESTION, few_shot=False, with_prompt=False) == HEADER + Q


def test_five_shot_without_prompt():
    expected = HEADER + "".join(_item(i) + "ABCDA"[i] + "\n\n" for i in range(5)) + Q
    assert C.prompt("逻辑学", SHOTS, QUESTION, few_shot=True, with_prompt=False) == expected
    assert expected.startswith("以下是中国关于逻辑学考试的单项选择题，请选出其中的正确答案。\n\n题0\nA. a0\nB. b0\nC. c0\nD. d0\n答案：A\n\n题1")


def test_zero_shot_with_prompt():
    expected = SYS + _user(HEADER + Q)
    assert C.prompt("逻辑学", SHOTS, QUESTION, few_shot=False, with_prompt=True) == expected
    assert expected == (
        "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant. 你是一个乐于助人的助手。<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\n以下是中国关于逻辑学考试的单项选择题，请选出其中的正确答案。\n\n"
        "所有S都是P，则\nA. 有的P是S\nB. P都是S\nC. S不是P\nD. 无法判断\n答案：<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n")


def test_five_shot_with_prompt():
    expected = ("<|begin_of_text|>" + SYS + _user(HEADER) + "好的，我会结合逻辑学相关知识回答<|eot_id|>"
                + "".join(_user(_item(i)) + "ABCDA"[i] + "<|eot_id|>" for i in range(5)) + _user(Q))
    assert C.prompt("逻辑学", SHOTS, QUESTION, few_shot=True, with_prompt=True) == expected
    assert expected.startswith(
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        "You are a helpful assistant. 你是一个乐于助人的助手。<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\n以下是中国关于逻辑学考试的单项选择题，请选出其中的正确答案。\n\n<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n好的，我会结合逻辑学相关知识回答<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\n题0\nA. a0\nB. b0\nC. c0\nD. d0\n答案：<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nA<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n题1")


def test_few_shot_with_no_shots_keeps_the_first_reply():
    """--few_shot True --ntrain 0 --with_prompt True: the old script still wrote the header turn and 好的…"""
    text = C.prompt("逻辑学", [], QUESTION, few_shot=True, with_prompt=True)
    assert text == "<|begin_of_text|>" + SYS + _user(HEADER) + "好的，我会结合逻辑学相关知识回答<|eot_id|>" + _user(Q)


def test_shots_are_ignored_without_few_shot():
    assert C.prompt("逻辑学", SHOTS, QUESTION, few_shot=False, with_prompt=True) == SYS + _user(HEADER + Q)


def test_subject_name_of_the_old_table():
    assert C.subject_name("mao_zedong_thought", "毛泽东思想和中国特色社会主义理论体系概论") == "毛泽东思想和中国特色社会主义理论概论"
    assert C.subject_name("logic", "逻辑学") == "逻辑学"


def test_a_shot_without_answer_is_an_error():
    with pytest.raises(ValueError, match="no answer"):
        C.prompt("逻辑学", [ExamDoc("logic", "9", "q", ("a", "b", "c", "d"))], QUESTION, few_shot=True, with_prompt=True)


# ---- scoring


def test_letter_scores_apply_the_old_penalty_and_temperature():
    import torch

    from subjectlm.compat.cla3.scorer import letter_scores

    logits = torch.tensor([0.0, 2.0, -1.0, 0.5, 3.0, 1.0, -2.0, 4.0])
    # bare letters 1..4, letters after ： 4..7 (A's two tokens differ, D's bare id is C's colon id ...)
    bare, colon = [1, 2, 3, 4], [4, 5, 6, 7]
    prompt_ids = [0, 1, 2, 6, 6]  # 1 (2.0 -> 2/1.1), 2 (-1.0 -> -1.1), 6 (-2.0 -> -2.2) occur in the prompt
    scores, top = letter_scores(logits, prompt_ids, bare, colon)
    expected = [(2.0 / 1.1 + 3.0) / 0.2, (-1.1 + 1.0) / 0.2, (0.5 - 2.2) / 0.2, (3.0 + 4.0) / 0.2]
    assert scores == pytest.approx(expected, rel=1e-6)
    assert top == 7


def test_letter_scores_equal_generate_output_scores(tiny_llama_dir):
    """What the old script read: generate()'s processed scores, here from transformers itself."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    from subjectlm.compat.cla3.scorer import letter_scores, letter_token_ids

    tok = AutoTokenizer.from_pretrained(str(tiny_llama_dir))
    model = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir), dtype=torch.float32)
    text = C.prompt("逻辑学", SHOTS, QUESTION, few_shot=True, with_prompt=False)
    ids = tok(text)["input_ids"]
    encode = lambda t, add_special_tokens=True: tok(t, add_special_tokens=add_special_tokens)["input_ids"]  # noqa: E731
    bare, colon = letter_token_ids(encode)
    config = GenerationConfig(temperature=0.2, top_k=0, top_p=1.0, do_sample=True, num_beams=1,
                              repetition_penalty=1.1, max_new_tokens=1, output_scores=True,
                              return_dict_in_generate=True)
    with torch.no_grad():
        out = model.generate(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             generation_config=config, pad_token_id=tok.eos_token_id)
        raw = model(input_ids=torch.tensor([ids])).logits[0, -1]
    reference = out.scores[0][0].float()
    expected = [float(reference[b] + reference[c]) for b, c in zip(bare, colon)]
    scores, top = letter_scores(raw, ids, bare, colon)
    assert scores == pytest.approx(expected, rel=1e-5, abs=1e-4)
    assert top == int(reference.argmax())


def test_on_the_llama3_vocabulary_the_two_letter_tokens_are_one():
    """With Llama 3's tokenizer "：A" is "：" + "A", so the old score counts the bare letter twice; and "\\nA. "
    puts every letter token in the prompt, so the repetition penalty shifts all four alike (argmax unchanged)."""
    from conftest import SHARED
    from subjectlm.compat.cla3.scorer import letter_token_ids

    vocab = SHARED / "llama-vocabs" / "ggml-vocab-llama-bpe.gguf"
    if not vocab.is_file():
        pytest.skip(f"{vocab} not present")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(vocab.parent), gguf_file=vocab.name)
    encode = lambda t, add_special_tokens=True: tok(t, add_special_tokens=add_special_tokens)["input_ids"]  # noqa: E731
    bare, colon = letter_token_ids(encode)
    assert bare == colon
    prompt_ids = set(encode(C.prompt("逻辑学", [], QUESTION, few_shot=False, with_prompt=True)))
    assert set(bare) <= prompt_ids
    assert encode("<|begin_of_text|><|start_header_id|>", add_special_tokens=False) == [128000, 128006]
