"""Concurrent requests decoded together: one thread runs every waiting request as one batch.

The decoder takes all requests that are waiting (up to `max_batch`), prefills them as one
left-padded batch and then decodes step by step over one KV cache. Each row keeps its own
sampling (temperature, top-p, seed: sampling.draw), stop strings, token limit and cancel
event; a row that ends (end-of-turn token, limit, stop string, cancel) leaves the batch at
once (its cache rows are dropped) and the others go on. A request that arrives while a batch
runs joins it between two decode steps (continuous batching): its prompt is prefilled on its
own, its cache rows are appended to the running cache (left-padded to a common length, the
padding masked), and from the next step it decodes with the others. So a long answer never
holds a short one back, and at 16 clients 16 batch-1 decodes become one batch-16 decode.

Greedy answers equal batch-1 answers token for token as long as the model's arithmetic does
not depend on the padding (tests/test_backends_batch.py checks it on a tiny Llama).
"""

from __future__ import annotations

import dataclasses
import inspect
import queue
import threading
from typing import Iterator

from subjectlm.backends import GenParams, Piece
from subjectlm.backends.sampling import draw, generator_for
from subjectlm.backends.text import cut_at_stop


def supports_batching(model) -> bool:
    """Whether every layer's cache is a plain growing KV cache (what `_decode` drops rows from);
    sliding-window, hybrid and linear-attention models are served one request at a time."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    return all(type(layer) is DynamicLayer for layer in DynamicCache(config=model.config).layers)


@dataclasses.dataclass(eq=False)
class _Request:
    ids: list[int]
    params: GenParams
    cancel: threading.Event
    max_new: int
    out: queue.SimpleQueue = dataclasses.field(default_factory=queue.SimpleQueue)
    new: list[int] = dataclasses.field(default_factory=list)
    sent: str = ""
    generator: object = None


class BatchedDecoder:
    def __init__(self, backend, max_batch: int):
        self.backend = backend
        self.max_batch = max(1, max_batch)
        self.pending: queue.SimpleQueue = queue.SimpleQueue()
        self.largest_batch = 0  # the most requests decoded together so far (tests and /health read it)
        self._thread: threading.Thread | None = None
        self._start = threading.Lock()
        accepted = inspect.signature(backend.model.forward).parameters
        # transformers >= 5.x names the cache argument `cache` (`past_key_values` is deprecated there)
        self._cache_arg = "cache" if "cache" in accepted else "past_key_values"
        # the prefill needs the last position's logits only: no (rows x prompt x vocab) head product
        self._last_only = {"logits_to_keep": 1} if "logits_to_keep" in accepted else {}

    def stream(self, ids: list[int], max_new: int, params: GenParams, cancel: threading.Event) -> Iterator[Piece]:
        request = _Request(ids, params, cancel, max_new)
        self.pending.put(request)
        with self._start:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="subjectlm-hf-batch", daemon=True)
                self._thread.start()
        finished = False
        try:
            while not finished:
                piece = request.out.get()
                if isinstance(piece, BaseException):
                    raise piece
                finished = piece.finish_reason is not None
                yield piece
        finally:
            if not finished:
                cancel.set()  # a reader that left: its row leaves the batch at the next step

    def _run(self) -> None:
        while True:
            first = self.pending.get()
            with self.backend.lock:  # generate() and this decoder never share the model at once
                live = [first] if self._still_wanted(first) else []
                live += self._waiting(self.max_batch - len(live))
                if not live:
                    continue
                self.largest_batch = max(self.largest_batch, len(live))
                try:
                    self._decode(live)
                except BaseException as exc:  # every waiting reader hears of it; the decoder lives on
                    for request in live:
                        request.out.put(exc)

    def _finish(self, request: _Request, reason: str, hit: bool = False) -> None:
        tokenizer = self.backend.tokenizer
        if reason != "cancelled" and not hit:  # whatever text was held back for a possible stop string
            text, _, _ = cut_at_stop(tokenizer.decode(request.new, skip_special_tokens=True), request.params.stop)
            if text[len(request.sent):]:
                request.out.put(Piece(text[len(request.sent):]))
        request.out.put(Piece("", reason, len(request.ids), len(request.new)))

    def _step_text(self, request: _Request) -> bool:
        """Send the text that is certain after the row's newest token; True when a stop string was found."""
        text, hit, hold = cut_at_stop(self.backend.tokenizer.decode(request.new, skip_special_tokens=True),
                                      request.params.stop)
        if not hit and text.endswith("\ufffd"):  # half of a multi-byte character: wait for the rest
            hold = max(hold, 1)
        ready = text[len(request.sent): len(text) - hold]
        if ready:
            request.sent += ready
            request.out.put(Piece(ready))
        return hit

    def _waiting(self, room: int) -> list[_Request]:
        """Up to `room` queued requests, without waiting; cancelled ones are answered and left out."""
        taken: list[_Request] = []
        while len(taken) < room:
            try:
                request = self.pending.get_nowait()
            except queue.Empty:
                break
            if self._still_wanted(request):
                taken.append(request)
        return taken

    @staticmethod
    def _still_wanted(request: _Request) -> bool:
        """False (and the request answered) if it was cancelled while it waited."""
        if request.cancel.is_set():
            request.out.put(Piece("", "cancelled", len(request.ids), 0))
            return False
        return True

    def _prefill(self, rows: list[_Request]):
        """The rows' prompts as one left-padded batch: last-position logits, cache, mask, each row's last position."""
        import torch
        from transformers import DynamicCache

        backend, device = self.backend, self.backend.device
        for request in rows:
            request.generator = generator_for(request.params.seed, device) if request.params.temperature > 0 else None
        width = max(len(r.ids) for r in rows)
        input_ids = torch.tensor([[backend.pad_id] * (width - len(r.ids)) + r.ids for r in rows], device=device)
        mask = torch.tensor([[0] * (width - len(r.ids)) + [1] * len(r.ids) for r in rows], device=device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache(config=backend.model.config)
        logits = backend.model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True,
                               **{self._cache_arg: cache}, **self._last_only).logits[:, -1]
        return logits, cache, mask, positions[:, -1:]

    def _decode(self, rows: list[_Request]) -> None:
        """Decode `rows` step by step; requests queued meanwhile join the batch between two steps (their
        prompts prefilled as a batch of their own, then their cache rows appended to the running cache).
        Joiners are appended to `rows` itself, so that the caller can tell them of an error."""
        import torch

        backend, device = self.backend, self.backend.device
        everyone = rows
        with torch.no_grad():
            logits, cache, mask, positions = self._prefill(rows)
            rows = list(rows)
            while rows:
                tokens, keep = [], []
                for i, request in enumerate(rows):
                    if request.cancel.is_set():
                        self._finish(request, "cancelled")
                        continue
                    p = request.params
                    token = draw(logits[i], p.temperature, p.top_p, request.generator)
                    request.new.append(token)
                    if token in backend.stop_ids:
                        self._finish(request, "stop")
                        continue
                    if self._step_text(request):
                        self._finish(request, "stop", hit=True)
                        continue
                    if len(request.new) >= request.max_new:
                        self._finish(request, "length")
                        continue
                    tokens.append(token)
                    keep.append(i)
                if keep:
                    if len(keep) < len(rows):
                        index = torch.tensor(keep, device=device)
                        cache.batch_select_indices(index)
                        mask, positions = mask[index], positions[index]
                        rows = [rows[i] for i in keep]
                    mask = torch.cat([mask, torch.ones(len(rows), 1, dtype=mask.dtype, device=device)], dim=1)
                    positions = positions + 1
                    logits = backend.model(input_ids=torch.tensor([[t] for t in tokens], device=device),
                                           attention_mask=mask, position_ids=positions, use_cache=True,
                                           **{self._cache_arg: cache}).logits[:, -1]
                else:
                    rows = []
                joiners = self._waiting(self.max_batch - len(rows))
                if not joiners:
                    continue
                everyone.extend(joiners)
                new_logits, new_cache, new_mask, new_positions = self._prefill(joiners)
                if rows:
                    mask = _join_caches(cache, mask, new_cache, new_mask)
                    logits = torch.cat([logits, new_logits])
                    positions = torch.cat([positions, new_positions])
                else:  # the batch had emptied: the joiners are the new batch
                    logits, cache, mask, positions = new_logits, new_cache, new_mask, new_positions
                rows += joiners
                self.largest_batch = max(self.largest_batch, len(rows))


def _join_caches(cache, mask, new_cache, new_mask):
    """Append `new_cache`'s rows to `cache` (in place), both left-padded to the longer; returns the joint mask.
    A padded position is masked out, so the rows attend to exactly what they did before."""
    import torch

    width = max(mask.shape[1], new_mask.shape[1])

    def left_pad(tensor, dim, to):
        gap = to - tensor.shape[dim]
        if gap == 0:
            return tensor
        shape = list(tensor.shape)
        shape[dim] = gap
        return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)

    for layer, new_layer in zip(cache.layers, new_cache.layers):
        layer.keys = torch.cat([left_pad(layer.keys, 2, width), left_pad(new_layer.keys, 2, width)])
        layer.values = torch.cat([left_pad(layer.values, 2, width), left_pad(new_layer.values, 2, width)])
    return torch.cat([left_pad(mask, 1, width), left_pad(new_mask, 1, width)])
