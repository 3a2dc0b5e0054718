"""Tokenizer fidelity against llama.cpp's own reference vocabularies (../shared/llama-vocabs/).

For each of llama.cpp's vocab-only test GGUFs (Llama 3, Qwen 2, Qwen 3.5, Llama 2 SentencePiece,
Phi-3, DeepSeek LLM, GPT-2): transformers rebuilds the tokenizer from the file, a tiny model gets it,
subjectlm exports that model, and llama.cpp must tokenize every one of llama.cpp's test strings (the
`.inp` file) plus Chinese text exactly as it tokenizes them with the reference file: with and without
BOS, and with special tokens parsed. The reference tokenization is itself checked against the
reference ids (`.out`), so the harness is known to run llama.cpp's test as llama.cpp does.

What this shows and what it cannot: it shows that our export writes a vocabulary (tokens, merges or
scores, types, pre-tokenizer name, space prefix, BOS flag) that llama.cpp runs exactly like the
original. It cannot show that we would *detect* the pre-tokenizer from a real model's tokenizer.json,
except where the rebuilt tokenizer carries the real pre-tokenizer regex. transformers rebuilds Llama 3,
Qwen 2 / 3.5 with their real regexes (detected here like a real tokenizer.json), but DeepSeek LLM with a
generic ByteLevel pre-tokenizer (llama.cpp's `deepseek-llm` regexes are not in the GGUF), so for it the
test passes `--pre_tokenizer deepseek-llm`, as a user exporting such a tokenizer would, and shows only
that the rest of the vocabulary is exact.
"""

from __future__ import annotations

import importlib.util

import pytest

from conftest import SHARED

VOCAB_DIR = SHARED / "llama-vocabs"
pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed"),
    pytest.mark.skipif(not VOCAB_DIR.is_dir(), reason=f"{VOCAB_DIR} (llama.cpp's reference vocabularies) is absent"),
]

# Vocab name -> the --pre_tokenizer the export needs (None: detected from the rebuilt tokenizer).
VOCABS = {
    "llama-bpe": None,
    "qwen2": None,
    "qwen35": None,
    "llama-spm": None,
    "phi-3": None,
    "gpt-2": None,
    "deepseek-llm": "deepseek-llm",   # rebuilt with a generic pre-tokenizer: see the module docstring
}

# Written for this test: Chinese exam-style text with full-width punctuation, digits and mixed Latin.
CHINESE = [
    "以下是中国关于高中地理考试的单项选择题，请选出其中的正确答案。",
    "地球自转一周约为23小时56分，公转一周约为365.25天。",
    "下列关于“光合作用”的说法，正确的是：A. 只在夜间进行 B. 释放氧气",
    "答案：B\n解析：植物在叶绿体中利用光能合成有机物。",
    "  长江全长约6300千米，是亚洲第一长河。Python 3.12 与 C++17。",
]


def _inputs(name: str) -> tuple[list[str], list[list[int]]]:
    texts = (VOCAB_DIR / f"ggml-vocab-{name}.gguf.inp").read_text(encoding="utf-8").split("\n__ggml_vocab_test__\n")
    ids = [[int(x) for x in line.split()]
           for line in (VOCAB_DIR / f"ggml-vocab-{name}.gguf.out").read_text(encoding="utf-8").split("\n")]
    return texts, ids[:len(texts)]


# The tokenizer class AutoTokenizer.from_pretrained(dir, gguf_file=...) picks for each file (found once
# by running it). AutoTokenizer itself first reads the whole file for a model config with gguf-py's
# reader (40-190 s a file on this machine; over a minute even for Qwen 3.5's, whose config has a fast
# path); the class reads only the vocabulary, in seconds, and builds the same tokenizer.
TOKENIZER_CLASS = {"qwen2": "Qwen2Tokenizer", "qwen35": "Qwen2Tokenizer"}


def _rebuilt_tokenizer(name: str):
    import transformers

    cls = getattr(transformers, TOKENIZER_CLASS.get(name, "TokenizersBackend"))
    return cls.from_pretrained(str(VOCAB_DIR), gguf_file=f"ggml-vocab-{name}.gguf")


def _with_bos_rule(tokenizer, adds_bos: bool):
    """Give the rebuilt tokenizer llama.cpp's BOS rule for this vocabulary, as the model's real
    tokenizer.json carries it (a post-processor). llama.cpp adds BOS for some pre-tokenizers whose GGUF
    has no add_bos_token key (Llama 3's); transformers' rebuild then adds none."""
    from tokenizers.processors import TemplateProcessing

    bos = tokenizer.bos_token
    if adds_bos:
        rule = TemplateProcessing(single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 {bos}:1 $B:1",
                                  special_tokens=[(bos, tokenizer.bos_token_id)])
    else:
        rule = TemplateProcessing(single="$A:0", pair="$A:0 $B:1", special_tokens=[])
    tokenizer.backend_tokenizer.post_processor = rule
    return tokenizer


def _tiny_model_with(tokenizer, path):
    """One tiny Llama layer with this vocabulary: export writes the tokenizer as it reads it from here."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
                         tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


@pytest.mark.parametrize("name", list(VOCABS))
def test_exported_vocab_tokenizes_like_llama_cpps_reference(name, tmp_path):
    import llama_cpp

    from subjectlm.export.gguf import export_gguf

    texts, expected = _inputs(name)
    ref = llama_cpp.Llama(model_path=str(VOCAB_DIR / f"ggml-vocab-{name}.gguf"), vocab_only=True, verbose=False)
    ours = None
    try:
        assert [ref.tokenize(t.encode(), add_bos=False, special=False) for t in texts] == expected  # the harness
        tokenizer = _rebuilt_tokenizer(name)
        # DeepSeek: transformers' rebuild appends new copies of <｜begin▁of▁sentence｜> and <｜end▁of▁sentence｜>
        # (ids 102401, 102402) instead of reusing 100000 and 100001, so BOS and parsed special tokens cannot
        # have the reference's ids there; only plain tokenization is compared for it.
        same_specials = tokenizer.bos_token_id == ref.token_bos()
        if same_specials:
            _with_bos_rule(tokenizer, ref.tokenize(b"a", add_bos=True, special=False)[:1] == [ref.token_bos()])
        model_dir = _tiny_model_with(tokenizer, tmp_path / "model")
        exported = export_gguf(model_dir, tmp_path / "m.gguf", "f16", pre_tokenizer=VOCABS[name], progress=False).path
        ours = llama_cpp.Llama(model_path=str(exported), vocab_only=True, verbose=False)
        specials = " ".join(ref.detokenize([i], special=True).decode() for i in (ref.token_bos(), ref.token_eos())
                            if i >= 0)
        cases = [*texts, *CHINESE, f"{specials} 你好 hello {specials}"]
        modes = ((False, False), (True, False), (True, True)) if same_specials else ((False, False),)
        differ = []
        for text in cases:
            for add_bos, special in modes:
                got = ours.tokenize(text.encode(), add_bos=add_bos, special=special)
                want = ref.tokenize(text.encode(), add_bos=add_bos, special=special)
                if got != want:
                    differ.append((text, add_bos, special, got, want))
        assert not differ, f"{len(differ)} of {len(modes) * len(cases)} tokenizations differ, e.g. {differ[0]}"
    finally:
        ref.close()
        if ours is not None:
            ours.close()


def test_phi3_export_keeps_phi3s_whitespace_rule_for_chat_text(tmp_path):
    """llama.cpp lets Phi-3's special tokens absorb the whitespace after them only when general.name
    says phi3; a Phi-3 fine-tune saved as `model` still gets that rule, so its chat prompts tokenize as
    with llama.cpp's reference Phi-3 vocabulary."""
    import llama_cpp
    import torch
    from transformers import AutoModelForCausalLM, Phi3Config

    from subjectlm.export.gguf import export_gguf

    tok = _rebuilt_tokenizer("phi-3")
    config = Phi3Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / "model", safe_serialization=True)
    tok.save_pretrained(tmp_path / "model")
    exported = export_gguf(tmp_path / "model", tmp_path / "m.gguf", "f16", progress=False).path
    ref = llama_cpp.Llama(model_path=str(VOCAB_DIR / "ggml-vocab-phi-3.gguf"), vocab_only=True, verbose=False)
    ours = llama_cpp.Llama(model_path=str(exported), vocab_only=True, verbose=False)
    try:
        assert ours.metadata["general.name"] == "model (phi3)"
        for text in ("<|user|>\nName a rock.<|end|>\n<|assistant|>\n", "<|system|> Be brief. <|end|> 你好"):
            assert ours.tokenize(text.encode(), add_bos=False, special=True) == \
                ref.tokenize(text.encode(), add_bos=False, special=True)
    finally:
        ref.close()
        ours.close()
