"""Eval backends: a model that answers scoring and generation requests and knows nothing about exams.

A backend has four methods (the `Backend` protocol). Which one is used is a
plain dict from name to loader; each loader imports its library only when used,
and a missing library is a clear error naming the package to install.

    __init__.py       the Backend protocol, BackendUnavailable, load_backend()
    hf.py             transformers: next-token log-probs from raw logits, shared prefix computed once
    shared_prefix.py  attention for a batch that continues one shared prefix, without copying it
    continuations.py  cloze log-likelihoods of continuations (hf), with two levels of reuse
    llamacpp.py       a GGUF through llama-cpp-python
    vllm.py           vLLM's engine (GPU machines)
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence

from subjectlm.errors import UserError


class Backend(Protocol):
    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        """Render a conversation with the model's chat template, ready for the assistant's reply."""

    def score_next(self, prompts: Sequence[str], continuations: Sequence[str],
                   add_special_tokens: bool = True) -> list[list[float]]:
        """For each prompt, the log-probability of each continuation's first token right after it.

        Prompts that share a leading token prefix (the header and shots of one subject)
        may be answered with that prefix computed once.
        """

    def score_continuations(self, contexts: Sequence[str], continuations: Sequence[Sequence[str]],
                            add_special_tokens: bool = True) -> list[list[float]]:
        """Cloze scoring: for each context, the summed log-probability of each of its continuations' tokens.

        Tokens are split as lm-eval splits them: context and context+continuation tokenized
        apart, the continuation being what the whole adds after the context's tokens.
        """

    def generate(self, prompts: Sequence[str], max_new_tokens: int, add_special_tokens: bool = True) -> list[str]:
        """Greedy completions (chain-of-thought mode)."""


class BackendUnavailable(UserError, RuntimeError):
    pass


def _hf(model: str, **kw: Any) -> Backend:
    from subjectlm.eval.backends.hf import HFBackend
    return HFBackend(model, **kw)


def _llamacpp(model: str, **kw: Any) -> Backend:
    from subjectlm.eval.backends.llamacpp import LlamaCppBackend
    return LlamaCppBackend(model, **kw)


def _vllm(model: str, **kw: Any) -> Backend:
    from subjectlm.eval.backends.vllm import VLLMBackend
    return VLLMBackend(model, **kw)


BACKENDS: dict[str, Callable[..., Backend]] = {"hf": _hf, "llamacpp": _llamacpp, "vllm": _vllm}


def load_backend(name: str, model: str, **kw: Any) -> Backend:
    """`auto` picks llamacpp for a .gguf file, else transformers."""
    if name == "auto":
        name = "llamacpp" if str(model).endswith(".gguf") else "hf"
    if name not in BACKENDS:
        raise BackendUnavailable(f"unknown backend {name!r}; known: auto, {', '.join(BACKENDS)}")
    return BACKENDS[name](model, **kw)
