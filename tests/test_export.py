"""GGUF export: the converter's tables and metadata, and llama.cpp agreeing with transformers.

Agreement tests load our f16 GGUF in llama.cpp (llama-cpp-python) and compare its logits
with the HF model's on the same tokens: top-1 >= 99% and mean KL <= 1e-3 for every family.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

HAVE_LLAMA_CPP = importlib.util.find_spec("llama_cpp") is not None
needs_llama_cpp = pytest.mark.skipif(not HAVE_LLAMA_CPP, reason="llama-cpp-python is not installed (pip install 'subjectlm[gguf]')")


def _tiny(path: Path, config, tokenizer, seed: int) -> Path:
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config).to(torch.float32)
    # Random init leaves norms at 1 (Gemma: 0); perturb them so a missed norm fix-up shows.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


def _common(tok):
    return dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)


@pytest.fixture(scope="module")
def tiny_mistral_dir(tmp_path_factory, smollm_tokenizer):
    from transformers import MistralConfig

    config = MistralConfig(**_common(smollm_tokenizer), tie_word_embeddings=False, sliding_window=None)
    return _tiny(tmp_path_factory.mktemp("tiny-mistral"), config, smollm_tokenizer, seed=3)


@pytest.fixture(scope="module")
def tiny_gemma_dir(tmp_path_factory, smollm_tokenizer):
    from transformers import GemmaConfig

    config = GemmaConfig(**_common(smollm_tokenizer), head_dim=16, hidden_activation="gelu_pytorch_tanh")
    return _tiny(tmp_path_factory.mktemp("tiny-gemma"), config, smollm_tokenizer, seed=4)


@pytest.fixture(scope="module")
def tiny_gemma2_dir(tmp_path_factory, smollm_tokenizer):
    from transformers import Gemma2Config

    config = Gemma2Config(**_common(smollm_tokenizer), head_dim=16, query_pre_attn_scalar=16, sliding_window=512)
    return _tiny(tmp_path_factory.mktemp("tiny-gemma2"), config, smollm_tokenizer, seed=5)


# ---- tables -------------------------------------------------------------------------------

@pytest.mark.parametrize("family, hf, gguf", [
    ("llama", "model.embed_tokens.weight", "token_embd.weight"),
    ("llama", "model.layers.1.self_attn.q_proj.weight", "blk.1.attn_q.weight"),
    ("qwen2", "model.layers.0.self_attn.k_proj.bias", "blk.0.attn_k.bias"),
    ("llama", "model.layers.0.post_attention_layernorm.weight", "blk.0.ffn_norm.weight"),
    ("gemma2", "model.layers.0.post_attention_layernorm.weight", "blk.0.post_attention_norm.weight"),
    ("gemma2", "model.layers.0.pre_feedforward_layernorm.weight", "blk.0.ffn_norm.weight"),
    ("mistral", "lm_head.weight", "output.weight"),
    ("llama", "model.layers.0.self_attn.rotary_emb.inv_freq", None),
])
def test_tensor_name_table(family, hf, gguf):
    from subjectlm.export.names import gguf_tensor_name

    assert gguf_tensor_name(hf, family, n_blocks=2) == gguf


def test_unknown_tensor_is_an_error():
    from subjectlm.export.names import gguf_tensor_name

    with pytest.raises(KeyError):
        gguf_tensor_name("model.layers.0.mlp.experts.0.w1.weight", "llama", 2)


def test_permute_qk_interleaves_each_heads_halves():
    import numpy as np

    from subjectlm.export.gguf import permute_qk

    w = np.arange(16).reshape(16, 1)
    out = permute_qk(w, n_head=2)[:, 0].tolist()
    assert out == [0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15]


@pytest.mark.parametrize("pre, name", [
    ({"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}, "gpt-2"),
    ({"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True},
                                            {"type": "ByteLevel", "use_regex": True}]}, "smollm"),
])
def test_pre_tokenizer_detection(pre, name):
    from subjectlm.export.vocab import detect_pre

    assert detect_pre({"pre_tokenizer": pre}) == name


def test_unknown_pre_tokenizer_names_the_fix():
    from subjectlm.export.vocab import VocabError, detect_pre

    with pytest.raises(VocabError, match="--pre_tokenizer"):
        detect_pre({"pre_tokenizer": {"type": "Whitespace"}})


# ---- conversion -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def llama_f16(tiny_llama_dir, tmp_path_factory):
    from subjectlm.export.gguf import export_gguf

    return export_gguf(tiny_llama_dir, tmp_path_factory.mktemp("gguf") / "tiny-f16.gguf", "f16", progress=False).path


def test_metadata_carries_vocab_template_and_end_of_turn(llama_f16, smollm_tokenizer):
    import gguf

    reader = gguf.GGUFReader(str(llama_f16))
    f = {k: v.contents() for k, v in reader.fields.items() if k not in ("tokenizer.ggml.merges",)}
    assert f["general.architecture"] == "llama"
    assert f["llama.block_count"] == 2 and f["llama.attention.head_count_kv"] == 2
    assert f["tokenizer.ggml.model"] == "gpt2" and f["tokenizer.ggml.pre"] == "gpt-2"
    assert len(f["tokenizer.ggml.tokens"]) == len(smollm_tokenizer) == 49152
    assert f["tokenizer.ggml.tokens"][2] == "<|im_end|>"
    assert f["tokenizer.ggml.eos_token_id"] == 2 and f["tokenizer.ggml.eot_token_id"] == 2
    assert f["tokenizer.ggml.bos_token_id"] == 1
    assert f["tokenizer.ggml.token_type"][2] == 3  # CONTROL: llama.cpp does not print it
    assert f["tokenizer.chat_template"] == smollm_tokenizer.chat_template
    names = {t.name: t for t in reader.tensors}
    assert "output.weight" not in names  # tied: llama.cpp reuses token_embd
    assert names["token_embd.weight"].tensor_type.name == "F16"
    assert names["blk.0.attn_norm.weight"].tensor_type.name == "F32"
    assert len(names) == 2 + 2 * 9


def test_existing_output_is_refused_without_overwrite(llama_f16, tiny_llama_dir):
    from subjectlm.export.gguf import export_gguf
    from subjectlm.io import OutputExistsError

    with pytest.raises(OutputExistsError, match="--overwrite"):
        export_gguf(tiny_llama_dir, llama_f16, "f16", progress=False)


def test_unsupported_model_type_is_refused(tmp_path):
    import json

    from subjectlm.export.gguf import ExportError, export_gguf

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ExportError, match="supported: llama, mistral, qwen2, qwen3, qwen3_moe, gemma"):
        export_gguf(tmp_path, tmp_path / "x.gguf", "f16")


@needs_llama_cpp
@pytest.mark.parametrize("fixture", ["tiny_llama_dir", "tiny_llama_untied_dir", "tiny_qwen2_dir",
                                     "tiny_mistral_dir", "tiny_gemma_dir", "tiny_gemma2_dir"])
def test_f16_export_agrees_with_transformers(fixture, request, tmp_path):
    from subjectlm.export.gguf import export_gguf
    from subjectlm.export.verify import verify

    model_dir = request.getfixturevalue(fixture)
    path = export_gguf(model_dir, tmp_path / "m.gguf", "f16", progress=False).path
    (row,) = verify(model_dir, [path], max_tokens=256)
    assert row.n_tokens >= 200
    assert row.top1 >= 0.99, row
    assert row.mean_kld <= 1e-3, row
    assert abs(row.ppl_gguf / row.ppl_hf - 1) < 0.01, row
    assert row.tokens_match, "llama.cpp tokenizes the sample differently from transformers"


@needs_llama_cpp
def test_q8_0_export_and_quantize_are_close_but_not_exact(llama_f16, tiny_llama_dir, tmp_path):
    from subjectlm.export.gguf import export_gguf
    from subjectlm.export.quantize import quantize
    from subjectlm.export.verify import verify

    ours = export_gguf(tiny_llama_dir, tmp_path / "q8.gguf", "q8_0", progress=False).path
    theirs = quantize(llama_f16, tmp_path / "q8-llama.gguf", "q8_0")
    q4 = quantize(llama_f16, tmp_path / "q4.gguf", "q4_k_m")
    assert q4.stat().st_size < theirs.stat().st_size < llama_f16.stat().st_size
    rows = verify(tiny_llama_dir, [ours, theirs, q4], max_tokens=128)
    for row in rows[:2]:
        assert 0 < row.mean_kld <= 1e-2 and row.top1 >= 0.9, row
    assert rows[2].mean_kld > rows[1].mean_kld  # 4 bits cost more than 8


@needs_llama_cpp
def test_unknown_quant_type_lists_the_known_ones(llama_f16, tmp_path):
    from subjectlm.export.quantize import QuantizeError, quant_types, quantize

    assert {"q4_k_m", "q5_k_m", "q8_0", "q6_k", "f16"} <= set(quant_types())
    with pytest.raises(QuantizeError, match="q4_k_m"):
        quantize(llama_f16, tmp_path / "x.gguf", "q9_z")


# ---- the default model through llama.cpp -------------------------------------------------------

@needs_llama_cpp
def test_default_model_chat_ends_at_end_of_turn(default_model_dir, tmp_path_factory):
    from subjectlm.backends import GenParams
    from subjectlm.backends.hf import HFBackend
    from subjectlm.backends.llamacpp import LlamaCppBackend
    from subjectlm.export.gguf import export_gguf

    path = export_gguf(default_model_dir, tmp_path_factory.mktemp("default") / "smol-f16.gguf", "f16",
                       progress=False).path
    messages = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]
    pieces = list(LlamaCppBackend(path, n_ctx=512).stream(messages, GenParams(max_tokens=100)))
    answer = "".join(p.text for p in pieces)
    assert pieces[-1].finish_reason == "stop"           # stopped by <|im_end|>, not by the length limit
    assert pieces[-1].completion_tokens < 100
    assert "Paris" in answer and "<|im_end|>" not in answer and "<|im_start|>" not in answer
    hf = list(HFBackend(default_model_dir).stream(messages, GenParams(max_tokens=100)))
    assert hf[-1].finish_reason == "stop"
    assert "".join(p.text for p in hf)[:20] == answer[:20]  # greedy: f16 and fp32 start the same


# ---- ollama, recipe stage, CLI -----------------------------------------------------------------

def test_modelfile_for_chatml_exact():
    from subjectlm.export.ollama import modelfile_text

    assert modelfile_text("./m.gguf", "chatml", extra_stops=("<|im_end|>", "<|endoftext|>")) == (
        "# ollama Modelfile written by subjectlm: `ollama create NAME -f Modelfile`\n"
        "FROM ./m.gguf\n"
        'TEMPLATE """{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n'
        '{{ end }}<|im_start|>assistant\n"""\n'
        'PARAMETER stop "<|im_end|>"\n'
        'PARAMETER stop "<|endoftext|>"\n'
    )


def test_write_modelfile_beside_the_gguf(llama_f16):
    from subjectlm.export.ollama import write_modelfile

    path, chat_format = write_modelfile(llama_f16, overwrite=True)
    assert path == llama_f16.parent / "Modelfile" and chat_format == "chatml"
    assert f"FROM ./{llama_f16.name}\n" in path.read_text()


@needs_llama_cpp
def test_recipe_stage_exports_verifies_and_answers(tiny_llama_dir, tmp_path):
    import json

    from subjectlm.export.job import ExportStageConfig, run

    result = run(ExportStageConfig(model=str(tiny_llama_dir), output_dir=str(tmp_path), quantize=["q8_0"],
                                   question="Hello?", answer_tokens=8, ollama=True))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "Modelfile", "answer.json", "model-f16-q8_0.gguf", "model-f16.gguf", "verify.json"]
    rows = json.loads((tmp_path / "verify.json").read_text())
    assert rows[0]["top1"] >= 0.99 and "2 GGUF(s)" in result["summary"]
    assert "model" not in result  # export does not change the pipeline's model


@pytest.mark.parametrize("argv", [["export", "gguf", "--help"], ["export", "verify", "--help"],
                                  ["export", "ollama", "--help"], ["export", "lora", "--help"], ["chat", "--help"], ["serve", "--help"]])
def test_cli_help(argv, capsys):
    from subjectlm.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "--gguf" in out if argv[1] == "ollama" else "--model" in out


@needs_llama_cpp
def test_cli_export_then_verify_prints_the_table(tiny_qwen2_dir, tmp_path, capsys):
    from subjectlm.cli import main

    out = tmp_path / "q.gguf"
    assert main(["export", "gguf", "--model", str(tiny_qwen2_dir), "--output", str(out), "--quantize", "q8_0"]) == 0
    assert main(["export", "gguf", "--model", str(tiny_qwen2_dir), "--output", str(out)]) == 2  # exists: a user error
    assert main(["export", "verify", "--model", str(tiny_qwen2_dir), "--gguf", str(out),
                 str(tmp_path / "q-q8_0.gguf"), "--max_tokens", "64"]) == 0
    text = capsys.readouterr()
    lines = text.out.strip().splitlines()
    assert "mean KLD" in lines[-4] and lines[-2].split()[-1] == "same" and len(lines) >= 4
    assert "already exists" in text.err


# ---- LoRA adapter as a GGUF adapter ---------------------------------------------------------

@needs_llama_cpp
@pytest.mark.parametrize("fixture", ["tiny_llama_dir", "tiny_qwen2_dir"])
def test_lora_adapter_gguf_matches_the_merged_model(fixture, request, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model

    from subjectlm.export.gguf import export_gguf
    from subjectlm.export.lora import export_lora_gguf
    from subjectlm.export.verify import verify
    from subjectlm.models import load_model

    base_dir = request.getfixturevalue(fixture)
    torch.manual_seed(5)
    config = LoraConfig(r=4, lora_alpha=8, init_lora_weights=False,  # random A and B: a visible update
                        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    peft_model = get_peft_model(load_model(base_dir, dtype="fp32"), config)
    peft_model.save_pretrained(tmp_path / "adapter")
    base = export_gguf(base_dir, tmp_path / "base.gguf", "f16", progress=False).path
    lora = export_lora_gguf(tmp_path / "adapter", base_dir, tmp_path / "lora.gguf")
    (with_lora,) = verify(base_dir, [base], max_tokens=128, adapter=tmp_path / "adapter", lora_gguf=lora)
    (without,) = verify(base_dir, [base], max_tokens=128, adapter=tmp_path / "adapter")
    assert with_lora.top1 >= 0.99 and with_lora.mean_kld <= 1e-3, with_lora
    assert without.mean_kld > 100 * with_lora.mean_kld  # the adapter really changes the model

    from subjectlm.cli import main

    assert main(["export", "lora", "--adapter", str(tmp_path / "adapter"), "--model", str(base_dir),
                 "--output", str(tmp_path / "cli.gguf")]) == 0
    assert (tmp_path / "cli.gguf").read_bytes() == lora.read_bytes()


# ---- SentencePiece tokenizers (Llama 2, Mistral, Gemma ship these) ---------------------------

@pytest.fixture(scope="module")
def tiny_spm_dirs(tmp_path_factory):
    """A tiny Llama with a byte-fallback SentencePiece BPE tokenizer trained here (500 pieces, 512
    embedding rows): one directory with tokenizer.model, one with only tokenizer.json."""
    import json
    import shutil

    import sentencepiece
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    from subjectlm.export.verify import SAMPLE_TEXT

    root = tmp_path_factory.mktemp("spm")
    lines = [line for line in SAMPLE_TEXT.splitlines() if line.strip()] * 3
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_prefix=str(root / "sp"), vocab_size=500, model_type="bpe",
        byte_fallback=True, character_coverage=1.0, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, minloglevel=2)
    (root / "src").mkdir()
    shutil.copy(root / "sp.model", root / "src" / "tokenizer.model")
    (root / "src" / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
         "legacy": False}))
    tok = AutoTokenizer.from_pretrained(str(root / "src"))
    config = LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=1, eos_token_id=2)
    torch.manual_seed(6)
    model = AutoModelForCausalLM.from_config(config)
    dirs = []
    for name in ("with-model", "json-only"):
        model.save_pretrained(root / name)
        tok.save_pretrained(root / name)
        dirs.append(root / name)
    shutil.copy(root / "sp.model", dirs[0] / "tokenizer.model")
    return dirs


@needs_llama_cpp
@pytest.mark.parametrize("which", [0, 1])
def test_sentencepiece_tokenizer_tokenizes_like_transformers(tiny_spm_dirs, which, tmp_path):
    import gguf

    from subjectlm.export.gguf import export_gguf
    from subjectlm.export.verify import verify

    model_dir = tiny_spm_dirs[which]
    path = export_gguf(model_dir, tmp_path / "spm.gguf", "f16", progress=False).path
    fields = gguf.GGUFReader(str(path)).fields
    assert fields["tokenizer.ggml.model"].contents() == "llama"
    tokens = fields["tokenizer.ggml.tokens"].contents()
    assert len(tokens) == 512 and tokens[511] == "[PAD511]"  # padded to the embedding's rows
    text = "Photosynthesis happens in chloroplasts. Zebra quokka 42 éàü 光合作用 🙂 end."  # unseen: byte fallback
    (row,) = verify(model_dir, [path], text=text)
    assert row.tokens_match, "llama.cpp tokenizes differently from transformers"
    assert row.top1 >= 0.99 and row.mean_kld <= 1e-3, row


def test_compare_logits_golden():
    import numpy as np

    from subjectlm.export.verify import compare_logits

    a = np.log(np.array([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]]))
    b = np.log(np.array([[0.25, 0.5, 0.25], [0.1, 0.8, 0.1]]))
    kld, top1, ppl_a, ppl_b = compare_logits(a, b, [0, 1, 2])
    assert kld == pytest.approx((0.5 * np.log(2) + 0.25 * np.log(0.5)) / 2)
    assert top1 == 0.5
    assert ppl_a == pytest.approx(np.exp(-(np.log(0.25) + np.log(0.1)) / 2))
    assert ppl_b == pytest.approx(np.exp(-(np.log(0.5) + np.log(0.1)) / 2))
