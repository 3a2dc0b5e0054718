"""Text generation backends for chat and serve: hf (transformers), llamacpp (GGUF), vllm.

Each backend answers two kinds of request, a chat (list of messages, rendered with the
model's own chat template) and a raw completion, as a stream of `Piece`s; the last piece
carries the finish reason and token counts. One generation runs at a time per backend
(a lock): these are single-model, single-user servers. `open_backend` picks one; the
first that applies wins and the error lists what is supported.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Any, Iterator, Protocol

BACKENDS = ("auto", "hf", "llamacpp", "vllm")


@dataclasses.dataclass
class GenParams:
    max_tokens: int = 256
    temperature: float = 0.0        # 0 = greedy
    top_p: float = 1.0
    stop: list[str] = dataclasses.field(default_factory=list)
    seed: int | None = None


@dataclasses.dataclass
class Piece:
    text: str
    finish_reason: str | None = None  # "stop" | "length" on the last piece
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Backend(Protocol):
    name: str
    model_id: str

    def chat(self, messages: list[dict[str, str]], params: GenParams) -> Iterator[Piece]: ...

    def complete(self, prompt: str, params: GenParams) -> Iterator[Piece]: ...


def cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool, int]:
    """(text before the first stop string, whether one was found, how many trailing chars to hold
    back because they might begin a stop string that the next piece completes)."""
    best = None
    for stop in stops:
        at = text.find(stop) if stop else -1
        if at >= 0 and (best is None or at < best):
            best = at
    if best is not None:
        return text[:best], True, 0
    hold = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:k]):
                hold = max(hold, k)
                break
    return text, False, hold


class HFBackend:
    """transformers generate() in a thread, streamed through TextIteratorStreamer."""

    name = "hf"

    def __init__(self, model: str | Path, trust_remote_code: bool = False):
        import torch

        from subjectlm.export.vocab import end_of_turn_token
        from subjectlm.models import load_model, load_tokenizer, resolve_model

        path = resolve_model(model)
        self.model_id = Path(str(model)).name if str(model) != "default" else "default"
        self.tokenizer = load_tokenizer(path, trust_remote_code=trust_remote_code)
        self.model = load_model(path, dtype="fp32", trust_remote_code=trust_remote_code)
        torch.set_num_threads(max(1, torch.get_num_threads()))
        stop_ids = set()
        eos = self.model.generation_config.eos_token_id
        stop_ids.update(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self.tokenizer.eos_token_id is not None:
            stop_ids.add(self.tokenizer.eos_token_id)
        eot = end_of_turn_token(self.tokenizer)
        if eot is not None:  # the end-of-turn token ends an answer even when config says otherwise
            stop_ids.add(self.tokenizer.convert_tokens_to_ids(eot))
        self.stop_ids = sorted(stop_ids)
        self.context = getattr(self.model.config, "max_position_embeddings", 2048)
        self.lock = threading.Lock()

    def chat(self, messages, params):
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return self._generate(ids, params)

    def complete(self, prompt, params):
        return self._generate(self.tokenizer(prompt)["input_ids"], params)

    def _generate(self, ids: list[int], params: GenParams) -> Iterator[Piece]:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        stopped = threading.Event()

        class _Flag(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return torch.full((input_ids.shape[0],), stopped.is_set(), dtype=torch.bool)

        max_new = max(1, min(params.max_tokens, self.context - len(ids)))
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        kwargs: dict[str, Any] = dict(
            input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            max_new_tokens=max_new, streamer=streamer, eos_token_id=self.stop_ids,
            pad_token_id=self.tokenizer.pad_token_id, stopping_criteria=StoppingCriteriaList([_Flag()]),
        )
        if params.temperature > 0:
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        result: list[Any] = []

        def work():
            try:
                if params.seed is not None:
                    torch.manual_seed(params.seed)
                with torch.no_grad():
                    result.append(self.model.generate(**kwargs))
            except BaseException as exc:  # surface it in the caller's thread
                result.append(exc)
                streamer.end()

        with self.lock:
            thread = threading.Thread(target=work, daemon=True)
            thread.start()
            sent, buffer, hit = "", "", False
            try:
                for chunk in streamer:
                    buffer += chunk
                    text, hit, hold = cut_at_stop(buffer, params.stop)
                    ready = text[len(sent): len(text) - hold]
                    if ready:
                        sent += ready
                        yield Piece(ready)
                    if hit:
                        break
            finally:  # a stop string, or a client that went away: end generate() at its next step
                stopped.set()
                thread.join()
        if result and isinstance(result[0], BaseException):
            raise result[0]
        if not hit:
            text, _, _ = cut_at_stop(buffer, params.stop)
            if text[len(sent):]:
                yield Piece(text[len(sent):])
        new = result[0][0, len(ids):].tolist() if result else []
        ended = hit or (new and new[-1] in self.stop_ids) or len(new) < max_new
        yield Piece("", "stop" if ended else "length", len(ids), len(new))


class LlamaCppBackend:
    """A GGUF through llama-cpp-python; its chat handler renders the chat template stored in the GGUF."""

    name = "llamacpp"

    def __init__(self, model: str | Path, n_ctx: int = 4096):
        from subjectlm.export.verify import open_llama

        self.model_id = Path(str(model)).name
        self.llm = open_llama(model, n_ctx=n_ctx)
        self.context = self.llm.n_ctx()
        self.lock = threading.Lock()

    def close(self) -> None:
        """Free llama.cpp's memory now (its finalizer at interpreter exit is noisy)."""
        self.llm.close()

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

    def chat(self, messages, params):
        with self.lock:
            parts = []
            finish = None
            for chunk in self.llm.create_chat_completion(messages=messages, **self._kwargs(params)):
                choice = chunk["choices"][0]
                text = choice.get("delta", {}).get("content") or ""
                finish = choice.get("finish_reason") or finish
                if text:
                    parts.append(text)
                    yield Piece(text)
            yield Piece("", finish or "stop", *self._usage("".join(parts)))

    def complete(self, prompt, params):
        with self.lock:
            parts = []
            finish = None
            for chunk in self.llm.create_completion(prompt=prompt, **self._kwargs(params)):
                choice = chunk["choices"][0]
                finish = choice.get("finish_reason") or finish
                if choice.get("text"):
                    parts.append(choice["text"])
                    yield Piece(choice["text"])
            yield Piece("", finish or "stop", *self._usage("".join(parts)))


class VLLMBackend:
    """vLLM's offline engine (GPU machines). Not streamed token by token: one piece per answer."""

    name = "vllm"

    def __init__(self, model: str | Path, trust_remote_code: bool = False):
        from subjectlm.errors import UserError
        from subjectlm.models import resolve_model

        try:
            import vllm
        except ImportError as exc:
            raise UserError("the vllm backend needs vLLM, which runs on Linux with an NVIDIA GPU: "
                            "pip install 'subjectlm[vllm]'; on CPU use --backend hf or llamacpp") from exc
        self.vllm = vllm
        self.model_id = Path(str(model)).name
        self.llm = vllm.LLM(model=str(resolve_model(model)), trust_remote_code=trust_remote_code)
        self.lock = threading.Lock()

    def _sampling(self, params: GenParams):
        return self.vllm.SamplingParams(max_tokens=params.max_tokens, temperature=params.temperature,
                                        top_p=params.top_p, stop=params.stop or None, seed=params.seed)

    def _pieces(self, outputs) -> Iterator[Piece]:
        out = outputs[0].outputs[0]
        yield Piece(out.text)
        yield Piece("", "length" if out.finish_reason == "length" else "stop",
                    len(outputs[0].prompt_token_ids), len(out.token_ids))

    def chat(self, messages, params):
        with self.lock:
            outputs = self.llm.chat(messages, self._sampling(params), use_tqdm=False)
        return self._pieces(outputs)

    def complete(self, prompt, params):
        with self.lock:
            outputs = self.llm.generate([prompt], self._sampling(params), use_tqdm=False)
        return self._pieces(outputs)


def open_backend(model: str | Path, backend: str = "auto", n_ctx: int = 4096,
                 trust_remote_code: bool = False) -> Backend:
    """`auto`: a .gguf file runs on llama.cpp, a model directory on transformers."""
    from subjectlm.config import ConfigError

    is_gguf = str(model).endswith(".gguf")
    if backend == "auto":
        backend = "llamacpp" if is_gguf else "hf"
    if backend == "llamacpp":
        if not is_gguf:
            raise ConfigError(f"backend: llamacpp needs a .gguf file (export one with `subjectlm export gguf`), got {model}")
        if not Path(model).is_file():
            raise ConfigError(f"model: {model} does not exist")
        return LlamaCppBackend(model, n_ctx=n_ctx)
    if is_gguf:
        raise ConfigError(f"backend: {backend} cannot run a .gguf file; use --backend llamacpp")
    if backend == "hf":
        return HFBackend(model, trust_remote_code=trust_remote_code)
    if backend == "vllm":
        return VLLMBackend(model, trust_remote_code=trust_remote_code)
    raise ConfigError(f"backend: {backend!r} is not one of {', '.join(BACKENDS)}")
