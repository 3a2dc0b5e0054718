"""`subjectlm chat`: talk to a model in the terminal, streaming; or one `--prompt` for scripts.

The conversation is a list of messages rendered by the model's own chat template (the
backend does that). `/reset` forgets the conversation (keeps the system prompt), `/exit`
(or Ctrl-D) leaves.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Callable, TextIO

from subjectlm.config import ConfigError, check_options, option
from subjectlm.serve.model_fields import AnsweringModel


@dataclasses.dataclass
class ChatConfig(AnsweringModel):
    system: str | None = option(None, help="system prompt")
    prompt: str | None = option(None, help="answer this one message, print the answer and exit")
    max_tokens: int = option(512, help="longest answer, in tokens", min=1)
    temperature: float = option(0.0, help="sampling temperature; 0 = greedy")
    top_p: float = option(1.0, help="nucleus sampling mass")
    seed: int | None = option(None, help="sampling seed")

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


def run(config: ChatConfig) -> int:
    from subjectlm.backends import open_backend

    backend = open_backend(config.model_spec())
    try:
        return chat_loop(backend, config)
    finally:
        backend.close()
