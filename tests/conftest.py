"""Shared fixtures: tiny random models saved as local HF directories, the real SmolLM2 tokenizer.

Tiny models are 2 layers, hidden 64, with the real SmolLM2 tokenizer (vocab 49152), so
chat templates and special tokens are real while a forward pass costs milliseconds.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CEVAL_DIR = SHARED / "ceval-exam"
SEED_DIR = SHARED / "seed_data"
REPO = Path(__file__).resolve().parents[1]
BENCH_DIR = REPO / "bench"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@contextmanager
def bench_script(name: str) -> Iterator[ModuleType]:
    """A script of bench/ imported as a module, for tests of its pure parts. bench/ is on sys.path meanwhile:
    the scripts import their sibling `baselines` as a top-level module."""
    sys.path.insert(0, str(BENCH_DIR))
    try:
        yield importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCH_DIR))


def pytest_configure(config):
    import torch

    # Two cores: keep each test process from oversubscribing them.
    torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def default_model_dir() -> Path:
    """The real default model (SmolLM2-135M-Instruct), prepared once per machine."""
    from subjectlm.models import prepare_default_model

    return prepare_default_model(quiet=True)


@pytest.fixture(scope="session")
def smollm_tokenizer(default_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(default_model_dir))


def _save_tiny(path: Path, config, tokenizer, seed: int = 0) -> Path:
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.to(torch.float32)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


def _tiny_config(config_cls, tokenizer, tie: bool):
    """2 layers, hidden 64, GQA 4/2 heads: big enough for real code paths, milliseconds per forward."""
    return config_cls(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        tie_word_embeddings=tie, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, smollm_tokenizer) -> Path:
    """A 2-layer Llama (hidden 64, tied embeddings like SmolLM2) with the SmolLM2 tokenizer."""
    from transformers import LlamaConfig

    config = _tiny_config(LlamaConfig, smollm_tokenizer, tie=True)
    return _save_tiny(tmp_path_factory.mktemp("tiny-llama"), config, smollm_tokenizer)


@pytest.fixture(scope="session")
def tiny_llama_untied_dir(tmp_path_factory, smollm_tokenizer) -> Path:
    """As tiny_llama_dir but with a separate lm_head (untied), as Llama-3 models have."""
    from transformers import LlamaConfig

    config = _tiny_config(LlamaConfig, smollm_tokenizer, tie=False)
    return _save_tiny(tmp_path_factory.mktemp("tiny-llama-untied"), config, smollm_tokenizer, seed=1)


@pytest.fixture(scope="session")
def tiny_qwen2_dir(tmp_path_factory, smollm_tokenizer) -> Path:
    """A 2-layer Qwen2 (attention biases, untied head) with the SmolLM2 tokenizer."""
    from transformers import Qwen2Config

    config = _tiny_config(Qwen2Config, smollm_tokenizer, tie=False)
    return _save_tiny(tmp_path_factory.mktemp("tiny-qwen2"), config, smollm_tokenizer, seed=2)


# Debian's Chromium, driven headless by Playwright (no browser download); the page tests skip without it.
CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if Path(p).exists()), None)


@pytest.fixture
def browser():
    if CHROMIUM is None:
        pytest.skip("no chromium binary (/usr/bin/chromium): install Debian's `chromium` package to run this test")
    playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the dev extra)")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        yield browser
        browser.close()
