"""Real chat templates (../shared/chat-templates/) through export, llama.cpp chat and sft labels.

Each template goes on the SmolLM2 tokenizer with the special tokens that template writes added, and on
a tiny "scripted" model whose next token depends only on the current one: after the last token of the
generation prompt it says A, B, C, then the end-of-turn token, then (should nothing stop it) A again.
So `subjectlm chat --backend llamacpp` printing exactly "A B C" shows llama.cpp stopped at the
end-of-turn token the export found by rendering the template; "A B CA B C..." would show it did not.
"""

from __future__ import annotations

import importlib.util

import pytest

from conftest import SHARED

TEMPLATE_DIR = SHARED / "chat-templates"
pytestmark = pytest.mark.skipif(not TEMPLATE_DIR.is_dir(), reason=f"{TEMPLATE_DIR} (real chat templates) is absent")
needs_llama_cpp = pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                                     reason="llama-cpp-python is not installed")

# file -> (end-of-turn token, bos, eos, other special tokens the template writes), read off each template.
TEMPLATES = {
    "meta-llama-Llama-3.1-8B-Instruct.jinja":
        ("<|eot_id|>", "<|begin_of_text|>", "<|end_of_text|>", ["<|start_header_id|>", "<|end_header_id|>",
                                                                "<|eom_id|>", "<|python_tag|>"]),
    "Qwen-Qwen2.5-7B-Instruct.jinja": ("<|im_end|>", None, "<|endoftext|>", []),
    "Qwen-Qwen3-0.6B.jinja": ("<|im_end|>", None, "<|endoftext|>", []),
    "microsoft-Phi-3.5-mini-instruct.jinja":
        ("<|end|>", "<s>", "<|endoftext|>", ["<|system|>", "<|user|>", "<|assistant|>"]),
    "google-gemma-2-2b-it.jinja": ("<end_of_turn>", "<bos>", "<eos>", ["<start_of_turn>"]),
    "mistralai-Mistral-Nemo-Instruct-2407.jinja": ("</s>", "<s>", "</s>", ["[INST]", "[/INST]"]),
    "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja":
        ("<｜end▁of▁sentence｜>", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", ["<｜User｜>", "<｜Assistant｜>"]),
    "HuggingFaceTB-SmolLM3-3B.jinja": ("<|im_end|>", None, "<|im_end|>", []),
}
QUESTION = "What is the capital of France?"


def _tokenizer(smollm_tokenizer, name):
    import copy

    eot, bos, eos, others = TEMPLATES[name]
    tok = copy.deepcopy(smollm_tokenizer)
    new = [t for t in dict.fromkeys([eot, *([bos] if bos else []), eos, *others]) if t not in tok.get_vocab()]
    tok.add_special_tokens({"additional_special_tokens": new})
    if name.startswith("Qwen-Qwen3"):
        tok.add_tokens(["<think>", "</think>"])  # added, not special, as in Qwen 3's tokenizer
    tok.bos_token = bos or tok.bos_token
    tok.eos_token = eos
    tok.chat_template = (TEMPLATE_DIR / name).read_text(encoding="utf-8")
    return tok


def _scripted_model(tok, eot, path, config_cls=None, **config):
    """A 1-layer model (Llama unless told) whose attention and MLP add nothing, so logits depend on the
    current token only: orthogonal embeddings for the chain's tokens and lm_head rows that point each to
    the next."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from subjectlm.backends.text import chat_text

    prompt_ids = tok(chat_text(tok, [{"role": "user", "content": QUESTION}]), add_special_tokens=False)["input_ids"]
    words = [tok.convert_tokens_to_ids(tok.tokenize(w))[0] for w in ("Paris", " is", " lovely")]
    chain = [prompt_ids[-1], *words, tok.convert_tokens_to_ids(eot)]
    config = (config_cls or LlamaConfig)(
        vocab_size=len(tok), hidden_size=64, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=512, tie_word_embeddings=False, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, **config)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        model.model.layers[0].self_attn.o_proj.weight.zero_()
        model.model.layers[0].mlp.down_proj.weight.zero_()
        emb, head = model.model.embed_tokens.weight, model.lm_head.weight
        emb[:, : len(chain)] = 0
        head.normal_(0, 0.01)
        for k, token in enumerate(chain):
            emb[token] = 0
            emb[token, k] = 10.0
        for k, token in enumerate(chain[1:]):
            head[token, k] = 5.0   # after chain[k] comes chain[k + 1]
        head[chain[1], len(chain) - 1] = 5.0   # after the end of turn, the answer again
    model.save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return path, tok.decode(words)


@pytest.fixture(scope="module", params=list(TEMPLATES))
def exported(request, smollm_tokenizer, tmp_path_factory):
    """(template file, tokenizer, model dir, expected answer, GGUF path, export result)."""
    from subjectlm.export.convert import export_model

    name = request.param
    tok = _tokenizer(smollm_tokenizer, name)
    root = tmp_path_factory.mktemp("template")
    model_dir, answer = _scripted_model(tok, TEMPLATES[name][0], root / "model")
    if importlib.util.find_spec("llama_cpp") is None:
        return name, tok, model_dir, answer, None, None
    result, _ = export_model(model_dir, root / "m.gguf", "f16", converter="subjectlm", progress=False)
    return name, tok, model_dir, answer, result.path, result


@needs_llama_cpp
def test_template_is_stored_with_its_end_of_turn_token(exported):
    import llama_cpp

    name, tok, _, _, path, result = exported
    eot = TEMPLATES[name][0]
    assert result.eot == eot
    llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    try:
        assert llm.metadata["tokenizer.chat_template"] == (TEMPLATE_DIR / name).read_text(encoding="utf-8")
        assert int(llm.metadata["tokenizer.ggml.eot_token_id"]) == tok.convert_tokens_to_ids(eot)
    finally:
        llm.close()


@needs_llama_cpp
def test_llama_cpp_chat_stops_at_the_end_of_turn(exported, capsys):
    from subjectlm.cli import main

    name, _, _, answer, path, _ = exported
    assert main(["chat", "--model", str(path), "--backend", "llamacpp", "--prompt", QUESTION,
                 "--max_tokens", "16", "--n_ctx", "512"]) == 0
    assert capsys.readouterr().out == answer + "\n"


# Each template's rendering of the two assistant turns below, read off the template by hand: the
# reply and the end-of-turn token, plus what the template itself writes into the turn (Qwen 3's think
# block on the last turn; DeepSeek-R1 drops the reasoning before </think>).
CONVERSATION = [
    {"role": "user", "content": "Name a rock."},
    {"role": "assistant", "content": "Granite."},
    {"role": "user", "content": "And a mineral?"},
    {"role": "assistant", "content": "<think>\nQuartz is common.\n</think>\n\nQuartz."},
]


def _expected_turns(name):
    eot = TEMPLATES[name][0]
    last = CONVERSATION[3]["content"]
    if name.startswith("Qwen-Qwen3"):
        return ["Granite." + eot, last + eot]
    if name.startswith("deepseek"):
        return ["Granite." + eot, "\n\nQuartz." + eot]
    return ["Granite." + eot, last + eot]


def test_sft_labels_cover_exactly_the_assistant_turns(exported):
    from subjectlm.train.tokenize import IGNORE, tokenize_conversation

    name, tok, *_ = exported
    ids, labels, status = tokenize_conversation(CONVERSATION, tok, "tokenizer", max_seq_length=1024)
    assert status == "ok"
    turns, current = [], []
    for token, label in zip(ids, labels):
        if label != IGNORE:
            current.append(token)
        elif current:
            turns.append(current)
            current = []
    if current:
        turns.append(current)
    assert [tok.decode(t) for t in turns] == _expected_turns(name)


def test_qwen3_single_answer_is_trained_with_the_templates_empty_think_block(smollm_tokenizer):
    """Qwen 3's template writes an empty think block into the last assistant turn when the reply has
    none; the trained span is that turn as rendered, block included (what the model learns to emit)."""
    from subjectlm.train.templates import tokenizer_template

    tok = _tokenizer(smollm_tokenizer, "Qwen-Qwen3-0.6B.jinja")
    segments = tokenizer_template(CONVERSATION[:2], tok)
    assert [text for text, trained in segments if trained] == ["<think>\n\n</think>\n\nGranite.<|im_end|>"]


def test_a_template_that_moves_earlier_text_is_refused(smollm_tokenizer):
    """Mistral Nemo puts the system prompt into the *last* user turn, so a prefix of the conversation
    renders differently from the whole: sft says so instead of labelling the wrong tokens."""
    from subjectlm.train.templates import TemplateError, tokenizer_template

    tok = _tokenizer(smollm_tokenizer, "mistralai-Mistral-Nemo-Instruct-2407.jinja")
    with pytest.raises(TemplateError, match="prefix by prefix"):
        tokenizer_template([{"role": "system", "content": "Be brief."}, *CONVERSATION], tok)


@needs_llama_cpp
@pytest.mark.skipif(not (SHARED / "llama-vocabs" / "ggml-vocab-qwen35.gguf").is_file(),
                    reason="../shared/llama-vocabs/ggml-vocab-qwen35.gguf is absent")
def test_qwen3_with_qwen35_vocab_exports_to_q8_0_and_chats_until_im_end(tmp_path, capsys):
    """The issue's must-show: `subjectlm export gguf` on a tiny Qwen3 with the Qwen 3.5 vocabulary and the
    Qwen 3 template, quantized to q8_0, then `subjectlm chat --backend llamacpp` answers and stops at
    <|im_end|>."""
    from transformers import Qwen2Tokenizer, Qwen3Config

    from subjectlm.cli import main

    tok = Qwen2Tokenizer.from_pretrained(str(SHARED / "llama-vocabs"), gguf_file="ggml-vocab-qwen35.gguf")
    tok.chat_template = (TEMPLATE_DIR / "Qwen-Qwen3-0.6B.jinja").read_text(encoding="utf-8")
    assert "<|im_end|>" in tok.get_vocab() and "<|im_start|>" in tok.get_vocab()
    model_dir, answer = _scripted_model(tok, "<|im_end|>", tmp_path / "qwen3", Qwen3Config, head_dim=32)
    out = tmp_path / "qwen3.gguf"
    assert main(["export", "gguf", "--model", str(model_dir), "--output", str(out), "--quantize", "q8_0"]) == 0
    printed = capsys.readouterr().out
    assert "(qwen3, f16," in printed and "end of turn '<|im_end|>'" in printed
    q8 = tmp_path / "qwen3-q8_0.gguf"
    assert main(["chat", "--model", str(q8), "--backend", "llamacpp", "--prompt", "What is the capital of France?",
                 "--max_tokens", "16", "--n_ctx", "512"]) == 0
    # A B C, then <|im_end|>: had llama.cpp not stopped there, the model would say A B C again.
    assert capsys.readouterr().out == answer + "\n"
    assert answer == "Paris is lovely"
