"""A GGUF file through llama-cpp-python: chat with the chat template stored in the GGUF.

llama-cpp-python streams lazily: a token is computed only when the stream is read. So
cancelling is to stop reading between tokens and close the stream; the lock is free at once.
Scores come from score_llamacpp.LlamaCppScorer over the same Llama. Nothing on this path imports torch.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Iterator, Sequence

from subjectlm.backends import Answer, GenParams, Piece, Prompt, Scores, acquire, answer_of, per_prompt
from subjectlm.backends.text import chat_text


def open_llama(path: str | Path, n_ctx: int = 2048, logits_all: bool = False, lora: str | Path | None = None,
               n_threads: int | None = None, **options):
    """A llama_cpp.Llama on CPU, quiet; a clear error when llama-cpp-python is missing."""
    from subjectlm.errors import UserError

    try:
        import llama_cpp
    except ImportError as exc:
        raise UserError("llama-cpp-python is not installed: pip install 'subjectlm[gguf]'") from exc
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        return llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, logits_all=logits_all, verbose=False,
                               n_threads=n_threads or max(1, min(8, threads)), n_gpu_layers=0,
                               lora_path=str(lora) if lora else None, **options)
    except ValueError as exc:  # llama.cpp says why only on stderr, which verbose=False hides
        raise UserError(f"llama.cpp (llama-cpp-python {llama_cpp.__version__}) could not load {path}"
                        f"{' with adapter ' + str(lora) if lora else ''}: {exc}. Is it a GGUF for this "
                        "llama.cpp version? Loading it with llama_cpp.Llama(..., verbose=True) shows the reason") from exc


class _PlainText:
    """chat_text's tokenizer stand-in for a GGUF without a chat template: no template, so plain paragraphs."""

    chat_template = None


class LlamaCppBackend(Scores):
    name = "llamacpp"

    def __init__(self, model: str | Path, n_ctx: int = 4096, n_threads: int | None = None):
        self.model_id = Path(str(model)).name
        self.llm = open_llama(model, n_ctx=n_ctx, n_threads=n_threads)
        self.context = self.llm.n_ctx()
        self.has_template = bool(self.llm.metadata.get("tokenizer.chat_template"))
        self.lock = threading.Lock()

    def close(self) -> None:
        """Free llama.cpp's memory now (its finalizer at interpreter exit is noisy)."""
        self.llm.close()

    def open_scorer(self):
        from subjectlm.backends.score_llamacpp import LlamaCppScorer

        return LlamaCppScorer(self.llm)

    def _kwargs(self, params: GenParams) -> dict[str, Any]:
        kw: dict[str, Any] = dict(max_tokens=params.max_tokens, temperature=params.temperature, top_p=params.top_p,
                                  stop=params.stop or None, stream=True)
        if params.seed is not None:
            kw["seed"] = params.seed
        return kw

    def _usage(self, text: str) -> tuple[int, int]:
        # llama-cpp-python streams text, not token counts: re-tokenize the answer, and take the
        # prompt as what else sits in the context (approximate by a token at most).
        completion = len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)) if text else 0
        return max(0, self.llm.n_tokens - completion), completion

    def _chunks(self, prompt: Prompt, params: GenParams) -> Iterator[dict]:
        if isinstance(prompt, str):
            return self.llm.create_completion(prompt=prompt, **self._kwargs(params))
        if not self.has_template:  # the same plain-paragraph rule as every other backend
            return self.llm.create_completion(prompt=chat_text(_PlainText, prompt), **self._kwargs(params))
        return self.llm.create_chat_completion(messages=[dict(m) for m in prompt], **self._kwargs(params))

    def stream(self, prompt: Prompt, params: GenParams, cancel: threading.Event | None = None) -> Iterator[Piece]:
        cancel = cancel or threading.Event()
        if not acquire(self.lock, cancel):
            yield Piece("", "cancelled")
            return
        try:
            parts: list[str] = []
            finish = None
            chunks = self._chunks(prompt, params)
            try:
                for chunk in chunks:
                    if cancel.is_set():
                        break
                    choice = chunk["choices"][0]
                    text = choice.get("text") or choice.get("delta", {}).get("content") or ""
                    finish = choice.get("finish_reason") or finish
                    if text:
                        parts.append(text)
                        yield Piece(text)
            finally:  # stop llama.cpp here: no token is computed after this
                chunks.close()
            if cancel.is_set():
                finish = "cancelled"
            yield Piece("", finish or "stop", *self._usage("".join(parts)))
        finally:
            self.lock.release()

    def generate(self, prompts: Sequence[Prompt], params: GenParams | Sequence[GenParams]) -> list[Answer]:
        return [answer_of(self.stream(p, g)) for p, g in zip(prompts, per_prompt(params, len(prompts)))]
