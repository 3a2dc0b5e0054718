"""The embedded default model: prepared offline from the shipped GGUF, a real model that knows Paris."""

from __future__ import annotations

import json

import pytest

from subjectlm.models import ModelNotFoundError, resolve_model


def test_default_model_is_prepared_as_safetensors(default_model_dir):
    names = {p.name for p in default_model_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= names
    config = json.loads((default_model_dir / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["model_type"] == "llama" and config["num_hidden_layers"] == 30
    assert resolve_model("default") == default_model_dir


def test_default_model_greedy_paris(default_model_dir):
    import torch

    from subjectlm.models import load_model, load_tokenizer

    model, tok = load_model("default"), load_tokenizer("default")
    ids = tok("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=1, do_sample=False)
    assert tok.decode(out[0, ids.input_ids.shape[1]:]) == " Paris"


def test_chat_template_kept(smollm_tokenizer):
    text = smollm_tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(ModelNotFoundError, match="never downloads"):
        resolve_model("some-org/some-model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        resolve_model(tmp_path / "empty")


def test_cli_model_prepare_prints_path(default_model_dir, capsys):
    from subjectlm.cli import main

    assert main(["model", "prepare"]) == 0
    assert capsys.readouterr().out.strip() == str(default_model_dir)
