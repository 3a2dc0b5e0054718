"""ModelSpec: what opening a model takes, declared once; and the flags of every config that opens one.

A config that opens a model (eval exam/qa/ppl, chat, serve, the arena) keeps flat fields: `--model`,
`--backend`, `--dtype`, `--device`, `--batch_size`, `--n_ctx`, `--trust_remote_code` are the flags and
recipe keys users know. Those fields are made by the `*_option` factories below, so each one's help,
choices and bounds are written here once (a config passes only what it says differently: a default, what
its batch is). The config class also derives from `OpensModel`, whose `model_spec()` gathers the fields
into the ModelSpec that `open_backend` takes: no call site unpacks them by hand.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from subjectlm.config import PathRole, option
from subjectlm.models import DTYPE_CHOICES

BACKENDS = ("auto", "hf", "llamacpp", "vllm", "openai")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One model to open, and how (open_backend(spec)). Fields a backend does not use are ignored by it."""

    model: str                      # a model directory, `default`, a .gguf file, or an http(s) URL
    backend: str = "auto"           # one of BACKENDS; auto: llamacpp for a .gguf, openai for a URL, else hf
    dtype: str | None = None        # None: the checkpoint's own on a GPU, fp32 on the CPU (a GGUF keeps its types)
    device: str | None = None       # hf: None = cuda when present, else cpu
    batch_size: int = 8             # hf: prompts per forward pass (generate and scores)
    n_ctx: int = 4096               # llama.cpp: context length in tokens
    trust_remote_code: bool = False  # hf, vllm: run the model directory's own Python code

    def __post_init__(self):
        if isinstance(self.model, Path):  # a Path is welcome; the spec holds text as configs do
            object.__setattr__(self, "model", str(self.model))


SPEC_FIELDS = tuple(f.name for f in dataclasses.fields(ModelSpec))


class OpensModel:
    """Mixin of a config dataclass with some of ModelSpec's fields, flat (made by the factories below)."""

    def model_spec(self, **changes: Any) -> ModelSpec:
        """The config's model fields as a ModelSpec; `changes` replace some (another model path, the context
        a run needs); a field the config does not have keeps ModelSpec's default."""
        return ModelSpec(**{**model_options(self), **changes})


def model_options(config: Any, target: type | None = None) -> dict[str, Any]:
    """The ModelSpec fields `config` declares, with its values; with `target` (a config class), only those
    `target` declares too: what a stage passes on to the configs of the commands it runs."""
    names = {f.name for f in dataclasses.fields(config)}
    if target is not None:
        names &= {f.name for f in dataclasses.fields(target)}
    return {name: getattr(config, name) for name in SPEC_FIELDS if name in names}


# --- the flat fields, help written once ---------------------------------------------------------------

MODEL_HELP = "model directory, `default`, or a .gguf file"
BACKEND_HELP = "auto: llamacpp for a .gguf, openai for an http(s) URL, else hf (transformers); vllm: GPU only"
DTYPE_HELP = "weights dtype (hf, vllm; auto: the checkpoint's own; a GGUF keeps its own types)"
DEFAULT_DTYPE_HELP = ("weights dtype (hf, vllm); default: the checkpoint's own on a GPU, fp32 on the CPU "
                      "(a GGUF keeps its own types)")
DEVICE_HELP = "hf: cpu, cuda, cuda:1, ... (default: cuda if available, else cpu)"
N_CTX_HELP = "llama.cpp context length (tokens)"
TRUST_HELP = "run custom model code from the model directory (only for models you trust)"


def model_option(default: str = "default", help: str = MODEL_HELP, aliases: tuple[str, ...] = ("--model_name_or_path",),
                 path: PathRole | None = None) -> Any:
    return option(default, help=help, aliases=aliases, path=path)


def backend_option(help: str = BACKEND_HELP) -> Any:
    return option("auto", help=help, choices=BACKENDS)


def dtype_option(default: str | None = "auto", help: str | None = None) -> Any:
    """`auto` keeps the checkpoint's dtype everywhere; None (serve, chat) keeps it on a GPU and uses fp32 on the CPU."""
    if help is None:
        help = DEFAULT_DTYPE_HELP if default is None else DTYPE_HELP
    return option(default, help=help, choices=DTYPE_CHOICES)


def device_option(help: str = DEVICE_HELP) -> Any:
    return option(None, help=help)


def batch_size_option(help: str, default: int = 8) -> Any:
    """`help` says what one batch is for this command (questions, prompts)."""
    return option(default, help=help, min=1)


def n_ctx_option(default: int = 4096, help: str = N_CTX_HELP) -> Any:
    return option(default, help=help, min=1)


def trust_remote_code_option(help: str = TRUST_HELP) -> Any:
    return option(False, help=help)
