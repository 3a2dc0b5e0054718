"""`subjectlm chat`: talk to a model in the terminal, streaming; or one `--prompt` for scripts.

The conversation is a list of messages rendered by the model's own chat template (the
backend does that). `/reset` forgets the conversation (keeps the system prompt), `/exit`
(or Ctrl-D) leaves.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Callable, TextIO

from subjectlm.backends import BACKENDS
from subjectlm.config import ConfigError, check_options, option
from subjectlm.models import DTYPE_CHOICES

# serve and chat share these (server.py imports them)
DTYPE_HELP = ("weights dtype (hf, vllm); default: the checkpoint's own on a GPU, fp32 on the CPU "
              "(a GGUF keeps its own types)")
DEVICE_HELP = "hf: cpu, cuda, cuda:1, ... (default: cuda if available, else cpu)"


@dataclasses.dataclass
class ChatConfig:
    model: str = option("default", help="model directory, `default`, or a .gguf file", aliases=("--model_name_or_path",))
    backend: str = option("auto", help="auto: llamacpp for a .gguf, else hf", choices=BACKENDS)
    system: str | None = option(None, help="system prompt")
    prompt: str | None = option(None, help="answer this one message, print the answer and exit")
    max_tokens: int = option(512, help="longest answer, in tokens", min=1)
    temperature: float = option(0.0, help="sampling temperature; 0 = greedy")
    top_p: float = option(1.0, help="nucleus sampling mass")
    seed: int | None = option(None, help="sampling seed")
    n_ctx: int = option(4096, help="llama.cpp context length (tokens)")
    dtype: str | None = option(None, help=DTYPE_HELP, choices=DTYPE_CHOICES)
    device: str | None = option(None, help=DEVICE_HELP)
    trust_remote_code: bool = option(False, help="allow custom model code from the model directory")

    def __post_init__(self):
        check_options(self)
        if not 0 <= self.temperature <= 2:
            raise ConfigError("temperature: must be between 0 and 2")


def answer(backend, messages: list[dict[str, str]], params, write: Callable[[str], None]) -> str:
    """Stream one reply through `write`; return its full text."""
    parts = []
    for piece in backend.stream(messages, params):
        if piece.text:
            parts.append(piece.text)
            write(piece.text)
    return "".join(parts)


def chat_loop(backend, config: ChatConfig, stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    from subjectlm.backends import GenParams

    stdin = stdin or sys.stdin  # looked up per call: tests and callers may swap sys.stdout
    stdout = stdout or sys.stdout
    params = GenParams(max_tokens=config.max_tokens, temperature=config.temperature, top_p=config.top_p, seed=config.seed)
    start = [{"role": "system", "content": config.system}] if config.system else []

    def write(text: str) -> None:
        stdout.write(text)
        stdout.flush()

    if config.prompt is not None:
        answer(backend, start + [{"role": "user", "content": config.prompt}], params, write)
        write("\n")
        return 0
    messages = list(start)
    interactive = stdin.isatty()
    if interactive:
        write(f"chatting with {backend.model_id} ({backend.name}); /reset forgets, /exit leaves\n")
    while True:
        if interactive:
            write("\n> ")
        line = stdin.readline()
        if not line:  # Ctrl-D / end of piped input
            return 0
        text = line.strip()
        if not text:
            continue
        if text in ("/exit", "/quit"):
            return 0
        if text == "/reset":
            messages = list(start)
            write("(conversation reset)\n")
            continue
        messages.append({"role": "user", "content": text})
        reply = answer(backend, messages, params, write)
        write("\n")
        messages.append({"role": "assistant", "content": reply})


def open_model(config) -> object:
    """The backend serve and chat talk to; dtype left unset is default_dtype's (the checkpoint's on a GPU,
    fp32 on the CPU). `config`: a ChatConfig or ServeConfig (model, backend, n_ctx, dtype, device,
    trust_remote_code; `parallel` when it has one)."""
    from subjectlm.backends import open_backend

    dtype = config.dtype
    if dtype is None and not str(config.model).endswith(".gguf") and config.backend != "llamacpp":
        from subjectlm.backends.device import default_dtype

        dtype = default_dtype(config.device)
    return open_backend(config.model, config.backend, n_ctx=config.n_ctx, dtype=dtype, device=config.device,
                        parallel=getattr(config, "parallel", 1), trust_remote_code=config.trust_remote_code)


def run(config: ChatConfig) -> int:
    backend = open_model(config)
    try:
        return chat_loop(backend, config)
    finally:
        backend.close()
