"""One model layer: every stage that runs a model (exam scoring, QA, chat, serve, arena) goes through here.

    __init__.py        the Backend protocol (generate, stream, score), GenParams, Piece, Answer, open_backend(spec)
    spec.py            ModelSpec (model, backend, dtype, device, batch_size, n_ctx, trust_remote_code) and the
                       flags of every config that opens a model, declared once
    text.py            pure text helpers: chat_text(), end_of_turn_token(), cut_at_stop()
    device.py          default_device(): cuda when present, else cpu (the one place that decides)
    sampling.py        per-row seeded sampling, so an answer never depends on its batch neighbours
    hf.py              transformers: streamed one request at a time, generate() in left-padded batches
    hf_batch.py        transformers: concurrent streams decoded together, step by step (`parallel` > 1)
    llamacpp.py        a GGUF through llama-cpp-python (open_llama, no torch on this path)
    vllm.py            vLLM's offline engine (GPU machines)
    openai.py          any OpenAI-compatible server over HTTP (generate and stream; no scoring)
    score_tokens.py    pure token helpers for scoring: common prefix, a letter's token in context, lm-eval's split
    score_hf.py        HFScorer: next-token log-probs on transformers, the shared prefix computed once
    shared_prefix.py   attention for a batch that continues one shared prefix, without copying it
    continuations.py   HFScorer's cloze log-likelihoods of continuations, with two levels of reuse
    score_llamacpp.py  LlamaCppScorer: letter and cloze scores from a GGUF, llama.cpp's cells reused
    score_vllm.py      VLLMScorer: letter and cloze scores from vLLM's engine (raw log-probs)
    score_rolling.py   windowed perplexity: the windows (pure), and the perplexity of text files on any backend

A prompt is either a raw string (a completion) or a list of chat messages, which the
backend renders with the model's own chat template. `stream` yields `Piece`s and ends with
one that carries the finish reason and token counts; it checks a `cancel` event between
tokens, so a caller that goes away (a disconnected HTTP client, a timeout, SIGTERM) frees
the model within one token. One generation runs at a time per backend (a lock).

Scoring (`score_next`, `loglikelihood`, `score_continuations`, `score_rolling`, `chat_prompt`) is a method
of the same object: the first call makes the backend's scorer (score_*.py) over the model it already
loaded, so one model in memory both generates and scores. Scores are raw log-probs from the logits,
never a sampler's. Every log-likelihood (exam cloze, QA references, the arena's judge, perplexity) is
one of these calls, so each works the same on every backend.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Any, Iterator, Mapping, NamedTuple, Protocol, Sequence, Union

from subjectlm.backends.spec import BACKENDS, ModelSpec
from subjectlm.errors import UserError

Messages = Sequence[Mapping[str, str]]
Prompt = Union[str, Messages]  # str: raw completion; messages: rendered with the chat template


@dataclasses.dataclass
class GenParams:
    max_tokens: int = 256
    temperature: float = 0.0        # 0 = greedy
    top_p: float = 1.0
    stop: list[str] = dataclasses.field(default_factory=list)
    seed: int | None = None         # sampling seed; the same seed gives the same answer, streamed or not


@dataclasses.dataclass
class Piece:
    text: str
    finish_reason: str | None = None  # "stop" | "length" | "cancelled" on the last piece
    prompt_tokens: int = 0
    completion_tokens: int = 0


class LogLikelihood(NamedTuple):
    """A summed log-probability (nats) and how many tokens it sums over; unpacks as (logprob, tokens)."""

    logprob: float
    tokens: int


@dataclasses.dataclass
class Answer:
    text: str
    finish_reason: str                # "stop" (end of turn or a stop string) | "length" | "cancelled"
    prompt_tokens: int
    completion_tokens: int


class Backend(Protocol):
    name: str       # "hf" | "llamacpp" | "vllm"
    model_id: str   # what /v1/models reports

    def stream(self, prompt: Prompt, params: GenParams, cancel: threading.Event | None = None) -> Iterator[Piece]:
        """One answer, piece by piece; stops within a token once `cancel` is set (last piece: "cancelled")."""

    def generate(self, prompts: Sequence[Prompt], params: GenParams | Sequence[GenParams]) -> list[Answer]:
        """Whole answers, one per prompt (batched where the backend can); `params` is shared or one per prompt."""

    def chat_prompt(self, messages: Messages) -> str:
        """The conversation rendered with the model's chat template, ready for the assistant's reply
        (BackendUnavailable without a template: scoring never guesses a format)."""

    def score_next(self, prompts: Sequence[str], continuations: Sequence[str],
                   add_special_tokens: bool = True) -> list[list[float]]:
        """For each prompt, the log-probability of each continuation's first token right after it.

        Prompts that share a leading token prefix (the header and shots of one subject) are
        answered with that prefix computed once."""

    def loglikelihood(self, contexts: Sequence[str], continuations: Sequence[Sequence[str]],
                      add_special_tokens: bool = True, move_whitespace: bool = True) -> list[list[LogLikelihood]]:
        """For each context, each of its continuations' summed token log-probability and token count
        (lm-eval's `loglikelihood`).

        Tokens are split as lm-eval splits them (score_tokens.encode_pair): whitespace at the end of the
        context moves to the front of the continuation, context and context+continuation are tokenized
        apart, the continuation being what the whole adds after the context's tokens
        (`move_whitespace=False`: trailing whitespace stays in the context). A continuation with no
        tokens of its own gets (-inf, 0)."""

    def score_continuations(self, contexts: Sequence[str], continuations: Sequence[Sequence[str]],
                            add_special_tokens: bool = True) -> list[list[float]]:
        """Cloze: `loglikelihood`'s summed log-probabilities alone."""

    def score_rolling(self, texts: Sequence[str], max_length: int | None = None, stride: int | None = None,
                      prefix: bool = True) -> list[LogLikelihood]:
        """Each whole text's summed token log-probability and token count, read in windows (lm-eval's
        `loglikelihood_rolling`; perplexity = exp(-sum / count)). The windows and the first token's
        context are defined exactly in score_rolling.py (`rolling_windows`, `rolling_tokens`)."""

    def close(self) -> None:
        """Free the model's memory now."""


class BackendUnavailable(UserError, RuntimeError):
    """A backend (or one of its features) cannot serve this request: a missing library, a missing template."""


class Scores:
    """The scoring half of every backend: its scorer (score_*.py) is made on first use over the model the
    backend already loaded, and a score holds the backend's lock as a generation does."""

    lock: threading.Lock
    _scorer: Any = None

    def open_scorer(self) -> Any:
        raise NotImplementedError

    @property
    def scorer(self) -> Any:
        if self._scorer is None:
            self._scorer = self.open_scorer()
        return self._scorer

    def chat_prompt(self, messages: Messages) -> str:
        return self.scorer.chat_prompt(messages)

    def score_next(self, prompts: Sequence[str], continuations: Sequence[str],
                   add_special_tokens: bool = True) -> list[list[float]]:
        scorer = self.scorer
        with self.lock:
            return scorer.score_next(prompts, continuations, add_special_tokens)

    def loglikelihood(self, contexts: Sequence[str], continuations: Sequence[Sequence[str]],
                      add_special_tokens: bool = True, move_whitespace: bool = True) -> list[list[LogLikelihood]]:
        scorer = self.scorer
        with self.lock:
            return scorer.loglikelihood(contexts, continuations, add_special_tokens, move_whitespace)

    def score_continuations(self, contexts: Sequence[str], continuations: Sequence[Sequence[str]],
                            add_special_tokens: bool = True) -> list[list[float]]:
        return [[score.logprob for score in row]
                for row in self.loglikelihood(contexts, continuations, add_special_tokens)]

    def score_rolling(self, texts: Sequence[str], max_length: int | None = None, stride: int | None = None,
                      prefix: bool = True) -> list[LogLikelihood]:
        scorer = self.scorer
        with self.lock:
            return scorer.score_rolling(texts, max_length, stride, prefix)


def answer_of(pieces: Iterator[Piece]) -> Answer:
    """Collect a stream into one Answer."""
    parts, last = [], Piece("", "stop")
    for piece in pieces:
        parts.append(piece.text)
        last = piece
    return Answer("".join(parts), last.finish_reason or "stop", last.prompt_tokens, last.completion_tokens)


def per_prompt(params: GenParams | Sequence[GenParams], n: int) -> list[GenParams]:
    if isinstance(params, GenParams):
        return [params] * n
    params = list(params)
    if len(params) != n:
        raise ValueError(f"{len(params)} GenParams for {n} prompts")
    return params


def open_backend(spec: ModelSpec, *, parallel: int = 1, served_model: str | None = None,
                 api_key_env: str | None = None, concurrency: int = 8, timeout: float = 120.0,
                 max_retries: int = 5) -> Backend:
    """The model `spec` names, on its backend. `auto`: a .gguf file runs on llama.cpp, a model directory (or
    `default`) on transformers, an http(s) URL on an OpenAI-compatible server.

    Of the spec, `n_ctx` is llama.cpp's context; `device` and `batch_size` (generate and scores) are hf's;
    `dtype` is hf's and vLLM's (None: the checkpoint's own on a GPU, fp32 on the CPU: device.default_dtype).
    The keywords are what one backend alone takes: `parallel` (hf: concurrent streams decoded together);
    for openai.py, `served_model` (the model name sent), `api_key_env` (the environment variable holding the
    API key), `concurrency` requests in flight, `timeout` seconds each, `max_retries`.
    llama.cpp and vLLM run one stream at a time here."""
    from subjectlm.config import ConfigError

    model, backend = spec.model, spec.backend
    is_gguf = model.endswith(".gguf")
    is_url = model.startswith(("http://", "https://"))
    if backend == "auto":
        backend = "openai" if is_url else "llamacpp" if is_gguf else "hf"
    if backend == "openai":
        from subjectlm.backends.openai import OpenAIBackend

        return OpenAIBackend(model, served_model, api_key_env=api_key_env, concurrency=concurrency,
                             timeout=timeout, max_retries=max_retries)
    if backend == "llamacpp":
        if not is_gguf:
            raise ConfigError(f"backend: llamacpp needs a .gguf file (export one with `subjectlm export gguf`), got {model}")
        if not Path(model).is_file():
            raise ConfigError(f"model: {model} does not exist")
        from subjectlm.backends.llamacpp import LlamaCppBackend

        return LlamaCppBackend(model, n_ctx=spec.n_ctx)
    if is_gguf:
        raise ConfigError(f"backend: {backend} cannot run a .gguf file; use --backend llamacpp")
    if backend == "hf":
        from subjectlm.backends.device import default_dtype
        from subjectlm.backends.hf import HFBackend

        return HFBackend(model, dtype=spec.dtype or default_dtype(spec.device), device=spec.device,
                         batch_size=spec.batch_size, parallel=parallel, trust_remote_code=spec.trust_remote_code)
    if backend == "vllm":
        from subjectlm.backends.vllm import VLLMBackend

        return VLLMBackend(model, dtype=spec.dtype or "auto", trust_remote_code=spec.trust_remote_code)
    raise ConfigError(f"backend: {backend!r} is not one of {', '.join(BACKENDS)}")


def acquire(lock: threading.Lock, cancel: threading.Event | None, poll: float = 0.05) -> bool:
    """Wait for the backend's lock, giving up as soon as `cancel` is set (a queued client that left)."""
    while not lock.acquire(timeout=poll):
        if cancel is not None and cancel.is_set():
            return False
    if cancel is not None and cancel.is_set():
        lock.release()
        return False
    return True
