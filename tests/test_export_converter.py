"""`--converter`: ours for the families in the table, llama.cpp's convert_hf_to_gguf.py for the rest.

The llama.cpp path runs for real on a tiny StableLM (a family outside our table): the converter of the
installed llama-cpp-python is fetched once with pip into $SUBJECTLM_HOME, and its output goes through
the same verify, quantize, chat-template and end-of-turn checks as ours.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

needs_llama_cpp = pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                                     reason="llama-cpp-python is not installed (pip install 'subjectlm[gguf]')")


@pytest.fixture(scope="module")
def converter_dir():
    """llama.cpp's converter, fetched with pip on first use (skip, saying why, where PyPI is unreachable)."""
    from subjectlm.export.llamacpp_converter import ConverterError, fetch_converter

    try:
        return fetch_converter()
    except ConverterError as exc:
        pytest.skip(f"llama.cpp's converter cannot be fetched here: {exc}")


@pytest.fixture(scope="module")
def tiny_stablelm_dir(tmp_path_factory, smollm_tokenizer):
    import torch
    from transformers import AutoModelForCausalLM, StableLmConfig

    tok = smollm_tokenizer
    config = StableLmConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                            partial_rotary_factor=0.25, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                            pad_token_id=tok.pad_token_id, tie_word_embeddings=False)
    torch.manual_seed(7)
    model = AutoModelForCausalLM.from_config(config).to(torch.float32)
    with torch.no_grad():  # far from uniform logits, so a wrong layout would show (see test_export_families)
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.mul_(4.0)
            elif "norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    path = tmp_path_factory.mktemp("tiny-stablelm")
    model.save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return path


def _model_type_dir(tmp_path: Path, model_type: str, architecture: str) -> Path:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": model_type, "architectures": [architecture]}))
    return tmp_path


@pytest.mark.parametrize("model_type, asked, used", [
    ("qwen3", "auto", "subjectlm"),
    ("phi3", "auto", "subjectlm"),
    ("stablelm", "auto", "llama.cpp"),
    ("qwen3", "llama.cpp", "llama.cpp"),
])
def test_pick_converter(model_type, asked, used, tmp_path):
    from subjectlm.export.convert import pick_converter

    assert pick_converter(_model_type_dir(tmp_path, model_type, "X"), asked) == used


def test_our_converter_on_a_family_outside_the_table_names_the_other(tmp_path):
    from subjectlm.errors import UserError
    from subjectlm.export.convert import pick_converter

    with pytest.raises(UserError, match="--converter llama.cpp"):
        pick_converter(_model_type_dir(tmp_path, "stablelm", "StableLmForCausalLM"), "subjectlm")


def test_unknown_converter_is_a_config_error():
    from subjectlm.config import ConfigError
    from subjectlm.export.job import GGUFConfig

    with pytest.raises(ConfigError, match="converter"):
        GGUFConfig(converter="ollama")


def test_neither_converter_knows_it_is_a_clear_error(converter_dir, tmp_path, smollm_tokenizer):
    from subjectlm.errors import UserError
    from subjectlm.export.convert import export_model

    (tmp_path / "m").mkdir()
    model_dir = _model_type_dir(tmp_path / "m", "made_up", "MadeUpForCausalLM")
    smollm_tokenizer.save_pretrained(model_dir)
    with pytest.raises(UserError, match="neither converter .* not in subjectlm's table .* llama.cpp's converter .* "
                                         "could not convert .*MadeUpForCausalLM"):
        export_model(model_dir, tmp_path / "x.gguf", "f16")
    assert not (tmp_path / "x.gguf").exists()


def test_fetched_converter_is_the_installed_llama_cpp_pythons(converter_dir):
    from importlib.metadata import version

    assert converter_dir.name == version("llama-cpp-python")
    assert (converter_dir / "convert_hf_to_gguf.py").is_file()
    assert (converter_dir / "gguf-py" / "gguf" / "constants.py").is_file()
    assert (converter_dir / "conversion" / "stablelm.py").is_file()


@needs_llama_cpp
def test_llama_cpp_converter_output_verifies_quantizes_and_stops(converter_dir, tiny_stablelm_dir, tmp_path, capsys,
                                                                 smollm_tokenizer):
    import gguf

    from subjectlm.cli import main
    from subjectlm.export.verify import verify

    out = tmp_path / "stablelm.gguf"
    assert main(["export", "gguf", "--model", str(tiny_stablelm_dir), "--output", str(out), "--outtype", "f32",
                 "--quantize", "q8_0"]) == 0
    printed = capsys.readouterr().out
    assert "llama.cpp converter" in printed and "end of turn '<|im_end|>'" in printed
    fields = gguf.GGUFReader(str(out)).fields
    assert fields["general.architecture"].contents() == "stablelm"
    assert fields["tokenizer.chat_template"].contents() == smollm_tokenizer.chat_template
    f32, q8 = verify(tiny_stablelm_dir, [out, tmp_path / "stablelm-q8_0.gguf"], max_tokens=256)
    assert f32.tokens_match and q8.tokens_match
    assert f32.top1 >= 0.999 and f32.mean_kld <= 1e-6, f32
    assert 0 < q8.mean_kld <= 1e-2 and q8.top1 >= 0.9, q8
