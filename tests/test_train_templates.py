"""Answer-only labels at exact token positions, truncation that keeps the answer, pt blocks with EOS."""

from __future__ import annotations

import pytest

from subjectlm.train.templates import chatml, llama3, render, render_prompt
from subjectlm.train.tokenize import IGNORE, iter_blocks, tokenize_conversation, tokenize_sft

TURN = [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "It is 4."}]


def test_chatml_segments_exact():
    assert chatml(TURN) == [
        ("<|im_start|>user\nWhat is 2+2?<|im_end|>\n", False),
        ("<|im_start|>assistant\n", False), ("It is 4.<|im_end|>", True), ("\n", False),
    ]


def test_llama3_segments_exact():
    assert "".join(t for t, _ in llama3(TURN)) == (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nIt is 4.<|eot_id|>")
    assert [t for t, trained in llama3(TURN) if trained] == ["It is 4.<|eot_id|>"]


def test_render_prompt_stops_before_the_answer(smollm_tokenizer):
    assert render_prompt(TURN[:1], "chatml", smollm_tokenizer, system_prompt="Be brief.") == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n")


@pytest.mark.parametrize("template", ["tokenizer", "chatml"])
def test_labels_only_on_assistant_tokens(smollm_tokenizer, template):
    tok = smollm_tokenizer
    ids, labels, status = tokenize_conversation(TURN, tok, template, 512)
    assert status == "ok"
    text = "".join(t for t, _ in render(TURN, template, tok))
    prefix = text[: text.rindex("It is 4.")]
    start = len(tok(prefix, add_special_tokens=False)["input_ids"])
    answer = tok("It is 4.<|im_end|>", add_special_tokens=False)["input_ids"]
    trained = [i for i, label in enumerate(labels) if label != IGNORE]
    assert trained == list(range(start, start + len(answer)))
    assert [ids[i] for i in trained] == answer
    assert answer[-1] == tok.convert_tokens_to_ids("<|im_end|>")  # the end-of-turn token is learnt
    assert ids[trained[-1] + 1:] == tok("\n", add_special_tokens=False)["input_ids"]  # newline after it is not


def test_every_assistant_turn_of_a_multi_turn_record_is_trained(smollm_tokenizer):
    tok = smollm_tokenizer
    conv = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Goodbye!"}]
    ids, labels, _ = tokenize_conversation(conv, tok, "tokenizer", 512)
    trained = tok.decode([t for t, label in zip(ids, labels) if label != IGNORE])
    assert trained == "Hello!<|im_end|>Goodbye!<|im_end|>"


def test_truncation_drops_history_then_prompt_and_keeps_the_answer(smollm_tokenizer):
    tok = smollm_tokenizer
    long_prompt = "word " * 300
    conv = [{"role": "user", "content": "old question " * 50}, {"role": "assistant", "content": "old answer"},
            {"role": "user", "content": long_prompt}, {"role": "assistant", "content": "The final answer."}]
    ids, labels, status = tokenize_conversation(conv, tok, "chatml", 64)
    assert status == "truncated" and len(ids) <= 64
    assert tok.decode([t for t, label in zip(ids, labels) if label != IGNORE]) == "The final answer.<|im_end|>"
    assert "old" not in tok.decode(ids)  # the older exchange went first


def test_examples_with_nothing_to_train_are_dropped_and_reported(smollm_tokenizer):
    class Conv:
        def __init__(self, messages, source):
            self.messages, self.source = messages, source

    long_system = [{"role": "system", "content": "rule " * 100}, *TURN]
    rows, stats = tokenize_sft([Conv(TURN, "a.json:1"), Conv(long_system, "a.json:2")], smollm_tokenizer,
                               "chatml", 40, progress=False)
    assert len(rows) == 1 and stats.examples == 1 and stats.dropped == 1
    assert stats.dropped_sources == ["a.json:2"] and "a.json:2" in stats.summary()


def test_pt_blocks_put_eos_between_documents(smollm_tokenizer):
    tok = smollm_tokenizer
    docs = ["alpha beta gamma", "delta epsilon", "zeta eta theta iota"]
    flat = []
    for d in docs:
        flat += tok(d, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    blocks = list(iter_blocks(docs, tok, 4, batch=2))
    assert blocks == [flat[i:i + 4] for i in range(0, len(flat) // 4 * 4, 4)]  # the short tail is dropped
    assert sum(b.count(tok.eos_token_id) for b in blocks) >= 2
