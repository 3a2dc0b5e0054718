"""transformers generation: `stream` one request at a time, `generate` in left-padded batches.

`stream` (with `parallel` 1) runs `model.generate` in a thread and reads its text through a
TextIteratorStreamer. A stopping criterion checks the caller's cancel event (and a stop
string found in the text) before every new token, so a cancelled request ends at its next
token and the lock is free again. Sampling goes through sampling.make_row_sampler in both
paths, so a seed gives the same answer streamed, unstreamed or batched. Scores come from
score_hf.HFScorer over this same model.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any, Iterator, Sequence

from subjectlm.backends import Answer, GenParams, Piece, Prompt, Scores, acquire, per_prompt
from subjectlm.backends.sampling import make_row_sampler
from subjectlm.backends.text import chat_text, cut_at_stop, end_of_turn_token


class HFBackend(Scores):
    name = "hf"

    def __init__(self, model: str | Path, dtype: str = "fp32", device: str | None = None, batch_size: int = 8,
                 trust_remote_code: bool = False, parallel: int = 1):
        from subjectlm.backends.device import default_device
        from subjectlm.models import load_model, load_tokenizer, resolve_model

        path = resolve_model(model)
        self.model_id = Path(str(model)).name if str(model) != "default" else "default"
        self.device = device or default_device()
        self.tokenizer = load_tokenizer(path, trust_remote_code=trust_remote_code)
        self.model = load_model(path, dtype=dtype, device=self.device, trust_remote_code=trust_remote_code)
        self.batch_size = max(1, int(batch_size))
        stop_ids = set()
        eos = self.model.generation_config.eos_token_id
        stop_ids.update(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self.tokenizer.eos_token_id is not None:
            stop_ids.add(self.tokenizer.eos_token_id)
        eot = end_of_turn_token(self.tokenizer)
        if eot is not None:  # the end-of-turn token ends an answer even when config says otherwise
            stop_ids.add(self.tokenizer.convert_tokens_to_ids(eot))
        self.stop_ids = sorted(stop_ids)
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (self.stop_ids[0] if self.stop_ids else 0)
        self.context = getattr(self.model.config, "max_position_embeddings", 2048)
        self.lock = threading.Lock()
        self._warned_plain = False
        # parallel > 1: concurrent streams are decoded together (hf_batch.py); 1: one at a time, here.
        self.parallel = max(1, int(parallel))
        self.decoder = None
        if self.parallel > 1:
            from subjectlm.backends.hf_batch import BatchedDecoder, supports_batching

            if supports_batching(self.model):
                self.decoder = BatchedDecoder(self, self.parallel)
            else:
                print(f"warning: {self.model_id} uses sliding-window or other non-plain attention caches: "
                      "requests are decoded one at a time", file=sys.stderr, flush=True)
                self.parallel = 1

    def close(self) -> None:
        pass  # torch frees the weights with the object

    def next_token_logits(self, ids: list[int]):
        """The raw float32 logits over the whole vocabulary for the token after `ids` (one sequence, no cache,
        on the CPU): for scoring rules that post-process them, as the old CLA3 script's repetition penalty."""
        import torch

        input_ids = torch.tensor([ids], device=self.device)
        with torch.inference_mode():
            try:  # project only the last position onto the vocabulary
                out = self.model(input_ids=input_ids, use_cache=False, logits_to_keep=1)
            except TypeError:  # a model class without logits_to_keep
                out = self.model(input_ids=input_ids, use_cache=False)
        return out.logits[0, -1].float().cpu()

    def open_scorer(self):
        from subjectlm.backends.score_hf import HFScorer

        return HFScorer(self.model, self.tokenizer, self.device, self.batch_size)

    def prompt_ids(self, prompt: Prompt) -> list[int]:
        """Token ids of a raw prompt (with the tokenizer's BOS) or of a conversation (the template writes its own)."""
        if isinstance(prompt, str):
            return list(self.tokenizer(prompt)["input_ids"])
        has_template = bool(getattr(self.tokenizer, "chat_template", None))
        if not has_template and not self._warned_plain:
            print(f"warning: {self.model_id} has no chat template: messages are sent as plain paragraphs",
                  file=sys.stderr, flush=True)
            self._warned_plain = True
        return list(self.tokenizer(chat_text(self.tokenizer, prompt), add_special_tokens=not has_template)["input_ids"])

    def _sampling(self, rows: Sequence[GenParams]) -> dict[str, Any]:
        """generate() kwargs: greedy decoding over a row sampler when any row samples (see sampling.py)."""
        from transformers import LogitsProcessorList

        kwargs: dict[str, Any] = dict(do_sample=False, temperature=None, top_p=None, top_k=None,
                                      eos_token_id=self.stop_ids, pad_token_id=self.pad_id)
        if any(p.temperature > 0 for p in rows):
            sampler = make_row_sampler([p.temperature for p in rows], [p.top_p for p in rows],
                                       [p.seed for p in rows], self.device)
            kwargs["logits_processor"] = LogitsProcessorList([sampler])
        return kwargs

    def _max_new(self, n_prompt: int, params: GenParams) -> int:
        return max(1, min(params.max_tokens, self.context - n_prompt))

    def stream(self, prompt: Prompt, params: GenParams, cancel: threading.Event | None = None) -> Iterator[Piece]:
        ids = self.prompt_ids(prompt)
        if self.decoder is not None:
            yield from self.decoder.stream(ids, self._max_new(len(ids), params), params, cancel or threading.Event())
            return
        if not acquire(self.lock, cancel):
            yield Piece("", "cancelled", len(ids), 0)
            return
        try:
            yield from self._stream_locked(ids, params, cancel or threading.Event())
        finally:
            self.lock.release()

    def _stream_locked(self, ids: list[int], params: GenParams, cancel: threading.Event) -> Iterator[Piece]:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        done = threading.Event()  # a stop string was found, or the reader left

        class _Stop(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return torch.full((input_ids.shape[0],), done.is_set() or cancel.is_set(), dtype=torch.bool)

        max_new = self._max_new(len(ids), params)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        kwargs = dict(input_ids=torch.tensor([ids], device=self.device),
                      attention_mask=torch.ones(1, len(ids), dtype=torch.long, device=self.device),
                      max_new_tokens=max_new, streamer=streamer, stopping_criteria=StoppingCriteriaList([_Stop()]),
                      **self._sampling([params]))
        result: list[Any] = []

        def work():
            try:
                with torch.no_grad():
                    result.append(self.model.generate(**kwargs))
            except BaseException as exc:  # surface it in the caller's thread
                result.append(exc)
                streamer.end()

        thread = threading.Thread(target=work, name="subjectlm-hf-generate", daemon=True)
        thread.start()
        sent, buffer, hit = "", "", False
        try:
            for chunk in streamer:
                buffer += chunk
                text, hit, hold = cut_at_stop(buffer, params.stop)
                ready = text[len(sent): len(text) - hold]
                if ready and not cancel.is_set():
                    sent += ready
                    yield Piece(ready)
                if hit:
                    break
        finally:  # a stop string, a cancel, or a reader that went away: generate() ends at its next step
            done.set()
            thread.join()
        if result and isinstance(result[0], BaseException):
            raise result[0]
        new = result[0][0, len(ids):].tolist() if result else []
        if cancel.is_set():
            yield Piece("", "cancelled", len(ids), len(new))
            return
        if not hit:
            text, _, _ = cut_at_stop(buffer, params.stop)
            if text[len(sent):]:
                yield Piece(text[len(sent):])
        ended = hit or (new and new[-1] in self.stop_ids) or len(new) < max_new
        yield Piece("", "stop" if ended else "length", len(ids), len(new))

    def generate(self, prompts: Sequence[Prompt], params: GenParams | Sequence[GenParams]) -> list[Answer]:
        rows = per_prompt(params, len(prompts))
        answers: list[Answer] = []
        for start in range(0, len(prompts), self.batch_size):
            batch = [self.prompt_ids(p) for p in prompts[start:start + self.batch_size]]
            with self.lock:
                answers += self._generate_batch(batch, rows[start:start + self.batch_size])
        return answers

    def _generate_batch(self, batch: list[list[int]], rows: list[GenParams]) -> list[Answer]:
        import torch

        width = max(len(ids) for ids in batch)
        # Left padding: every prompt's last real token sits in the last column, where new tokens follow.
        input_ids = torch.tensor([[self.pad_id] * (width - len(ids)) + ids for ids in batch], device=self.device)
        mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in batch], device=self.device)
        max_news = [self._max_new(width, p) for p in rows]
        with torch.no_grad():
            out = self.model.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=max(max_news),
                                      **self._sampling(rows))
        answers = []
        for ids, p, max_new, new in zip(batch, rows, max_news, out[:, width:].tolist()):
            new = new[:max_new]
            end = next((i for i, t in enumerate(new) if t in self.stop_ids), None)
            finish = "stop" if end is not None else ("length" if len(new) == max_new else "stop")
            if end is not None:
                new = new[:end + 1]  # the end-of-turn token was generated, and is counted
            text, hit, _ = cut_at_stop(self.tokenizer.decode(new, skip_special_tokens=True), p.stop)
            answers.append(Answer(text, "stop" if hit else finish, len(ids), len(new)))
        return answers

