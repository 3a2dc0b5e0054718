"""Scoring on transformers: next-token log-probs from raw logits, with the shared prefix computed once.

`HFScorer` works on the model and tokenizer that hf.py's HFBackend already loaded (created
the first time a score is asked for), so one model in memory both generates and scores.

All questions of one subject start with the same header and shots (often 90% of
the tokens). `score_next` finds the longest token prefix common to all prompts of
a call, runs it once, and for each batch of questions runs only the questions' own
tokens against it (shared_prefix.py; elsewhere against a copy of its KV cache expanded
to the batch), right-padded: padding sits after
every real token, so the causal mask keeps it invisible, and position ids continue
from the prefix. Logits are taken from the model's output directly: no sampling
processors (repetition penalty and friends would change them).

The common prefix is found on token ids of the *full* prompts, never by tokenizing
the prefix text alone: BPE merges across the prefix/question boundary ("\\n\\n" then
text) would otherwise give a different tokenization from the full prompt.
"""

from __future__ import annotations

import copy
import inspect
from typing import Sequence

from subjectlm.backends.score_tokens import (
    ContinuationSums,
    TokenizerText,
    common_prefix_length,
)
from subjectlm.backends.shared_prefix import PackedRows, plain_cache_layers, prefix_key_values, register_shared_prefix


def _expand(prefix_cache, n: int):
    """A copy of the batch-1 prefix cache repeated to batch size n (the original stays untouched)."""
    cache = copy.deepcopy(prefix_cache)
    if n > 1:
        cache.batch_repeat_interleave(n)
    return cache


def _truncate(cache, length: int) -> bool:
    """Cut a cache back to its first `length` positions, in place, so the next batch reuses it without
    a copy. Only plain full-attention layers (keys/values [batch, heads, seq, dim]) are cut; for any
    other kind (sliding window, linear attention) return False and let the caller expand afresh."""
    layers = plain_cache_layers(cache)
    if layers is None:
        return False
    for layer in layers:
        if getattr(layer, "keys", None) is not None and layer.keys.numel():
            layer.keys = layer.keys[..., :length, :]
            layer.values = layer.values[..., :length, :]
    return True


def _shared_prefix_ok(model) -> bool:
    """Shared-prefix attention is plain softmax attention: not for soft-capped or sliding-window models,
    nor for models that cannot switch attention implementation."""
    config = model.config
    if getattr(config, "attn_logit_softcapping", None) is not None:
        return False
    if any(kind != "full_attention" for kind in getattr(config, "layer_types", None) or ["full_attention"]):
        return False
    return bool(getattr(model, "_can_set_attn_implementation", lambda: False)())


def _scored_sum(logits, targets):
    """Summed log-softmax of each row of logits [N, V] at its target token (float32)."""
    import torch

    return -torch.nn.functional.cross_entropy(logits.float(), targets, reduction="sum")


class HFScorer(ContinuationSums, TokenizerText):
    """Scoring over an already loaded transformers model and tokenizer (the generation backend's own)."""

    def __init__(self, model, tokenizer, device, batch_size: int = 8, prefix_reuse: bool = True):
        import torch

        super().__init__(tokenizer)
        self.model = model
        self.device = torch.device(device)
        self.batch_size = max(1, int(batch_size))
        self.prefix_reuse = prefix_reuse
        # Batches attend to one batch-1 copy of the prefix (see shared_prefix.py) where the model allows it.
        # Without prefix_kv the registered attention is plain SDPA, so generation is unchanged.
        self.shared_prefix = prefix_reuse and _shared_prefix_ok(self.model)
        self.packed = True  # letter mode on the shared path: a batch's questions packed in one row, no padding
        if self.shared_prefix:
            self.model.set_attn_implementation(register_shared_prefix())
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (self.tokenizer.eos_token_id or 0)
        # transformers 5.x renamed the forward's `past_key_values` to `cache` (the old name warns, then goes).
        self.cache_kw = "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"

    # -- scoring ----------------------------------------------------------------------------------
    def score_next(self, prompts: Sequence[str], continuations: Sequence[str],
                   add_special_tokens: bool = True) -> list[list[float]]:
        seqs = [self.encode(p, add_special_tokens) for p in prompts]
        wanted = [self.continuation_ids(p, continuations) for p in prompts]
        return self.next_token_logprobs(seqs, wanted)

    def next_token_logprobs(self, seqs: Sequence[Sequence[int]], wanted: Sequence[Sequence[int]]) -> list[list[float]]:
        """log softmax of the logits after each sequence, at the `wanted` token ids."""
        import torch

        if not seqs:
            return []
        prefix_len = common_prefix_length(seqs) if self.prefix_reuse else 0
        prefix_cache = None
        with torch.inference_mode():
            if prefix_len > 0:
                prefix_cache = self.prefix_cache(seqs[0][:prefix_len])
            # Longest first: the peak-memory batch comes first, and similar lengths pad less.
            order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
            results: list[list[float]] = [[] for _ in seqs]
            shared = prefix_key_values(prefix_cache) if self.shared_prefix and prefix_cache is not None else None
            expanded: dict[int, object] = {}  # batch size -> the prefix cache repeated to it (no shared path)
            for start in range(0, len(order), self.batch_size):
                batch = order[start:start + self.batch_size]
                cache = None
                if prefix_cache is not None and shared is None:
                    cache = expanded.get(len(batch))
                    if cache is None:
                        expanded.clear()  # one expanded copy at a time: peak memory
                        cache = expanded[len(batch)] = _expand(prefix_cache, len(batch))
                suffixes = [seqs[i][prefix_len:] for i in batch]
                if shared is not None and self.packed:
                    rows = self._forward_packed(suffixes, prefix_len, shared)
                else:
                    rows = self._forward_batch(suffixes, prefix_len, cache, shared)
                if cache is not None and not _truncate(cache, prefix_len):
                    expanded.clear()  # a cache kind we cannot cut back: expand afresh for each batch
                for i, row in zip(batch, rows):
                    results[i] = row[torch.tensor(list(wanted[i]), device=row.device)].tolist()
        return results

    def prefix_cache(self, ids: Sequence[int]):
        """The batch-1 KV cache of a shared prefix (call under inference_mode)."""
        import torch

        tokens = torch.tensor([list(ids)], device=self.device)
        # Only the cache is wanted: skip the vocabulary projection of every prefix position.
        try:
            out = self.model(input_ids=tokens, use_cache=True, logits_to_keep=1)
        except TypeError:
            out = self.model(input_ids=tokens, use_cache=True)
        return getattr(out, "cache", None) or getattr(out, "past_key_values", None)

    def _continuation_sums(self, context_ids, option_ids) -> list[list[float]]:
        from subjectlm.backends.continuations import continuation_logprobs  # shared prefixes, packed options

        return continuation_logprobs(self, context_ids, option_ids)

    def score_rolling(self, texts: Sequence[str], max_length: int | None = None, stride: int | None = None,
                      prefix: bool = True) -> list:
        """Each text's summed log-prob and token count, read in windows (score_rolling.py); windows
        default to the model's context (max_position_embeddings)."""
        from subjectlm.backends.score_rolling import window_settings

        context = getattr(self.model.config, "max_position_embeddings", None) or 2048
        max_length, stride = window_settings(max_length, stride, context)
        return [self.rolling_logprob(self.rolling_tokens(text, prefix), max_length, stride) for text in texts]

    def rolling_logprob(self, ids: Sequence[int], max_length: int, stride: int):
        """Summed log-prob and count of the tokens of `ids` that score_rolling.rolling_windows counts: one
        forward per window (no padding), only the counted positions projected onto the vocabulary."""
        import torch

        from subjectlm.backends import LogLikelihood
        from subjectlm.backends.score_rolling import rolling_windows

        total, count = 0.0, 0
        with torch.inference_mode():
            for begin, end, new in rolling_windows(len(ids), max_length, stride):
                window = torch.tensor([list(ids[begin:end])], device=self.device)
                try:  # the last `new` positions predict the counted tokens
                    logits = self.model(input_ids=window, logits_to_keep=new).logits[0]
                except TypeError:  # a model class without logits_to_keep
                    logits = self.model(input_ids=window).logits[0, -new:]
                targets = torch.tensor(list(ids[end + 1 - new:end + 1]), device=logits.device)
                total += float(_scored_sum(logits, targets))
                count += new
        return LogLikelihood(total, count)

    def _forward_packed(self, suffixes: list[Sequence[int]], prefix_len: int, shared):
        """Log-probs after each suffix, the suffixes packed end to end in one row (no padding tokens, so no
        wasted matmul rows); each restarts its positions at prefix_len and attends to the shared prefix
        and to its own span only (shared_prefix.PackedRows)."""
        import torch

        lengths = [len(s) for s in suffixes]
        ends = torch.tensor(lengths).cumsum(0)
        bounds = [(int(e) - n, int(e)) for e, n in zip(ends, lengths)]
        input_ids = torch.tensor([[t for s in suffixes for t in s]])
        positions = torch.cat([torch.arange(prefix_len, prefix_len + n) for n in lengths]).unsqueeze(0)
        kwargs = dict(input_ids=input_ids.to(self.device), position_ids=positions.to(self.device), use_cache=False,
                      prefix_kv=shared, packed=PackedRows(bounds))
        try:  # only each suffix's last position is projected onto the vocabulary
            logits = self.model(**kwargs, logits_to_keep=(ends - 1).to(self.device)).logits[0]
        except TypeError:  # a model class without logits_to_keep
            logits = self.model(**kwargs).logits[0, (ends - 1).to(self.device)]
        return torch.log_softmax(logits.float(), dim=-1)

    def _forward_batch(self, suffixes: list[Sequence[int]], prefix_len: int, cache, shared=None):
        """Log-probs after each suffix; `cache` (already of this batch size) holds the prefix and grows,
        or `shared` holds the batch-1 prefix keys/values per layer for shared-prefix attention."""
        import torch

        n, width = len(suffixes), max(len(s) for s in suffixes)
        input_ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((n, prefix_len + width), dtype=torch.long)
        mask[:, :prefix_len] = 1
        for r, s in enumerate(suffixes):
            input_ids[r, : len(s)] = torch.tensor(list(s))
            mask[r, prefix_len: prefix_len + len(s)] = 1
        positions = torch.arange(prefix_len, prefix_len + width).unsqueeze(0).expand(n, -1)
        last = torch.tensor([len(s) - 1 for s in suffixes]).unsqueeze(1)
        kwargs = dict(input_ids=input_ids.to(self.device), position_ids=positions.to(self.device),
                      use_cache=cache is not None)
        if shared is not None:  # right padding needs no mask under causal attention (shared_prefix.py)
            kwargs["prefix_kv"] = shared
        else:
            kwargs["attention_mask"] = mask.to(self.device)
        if cache is not None:
            kwargs[self.cache_kw] = cache
        try:
            # Only the last real position of each row is projected onto the vocabulary.
            logits = self.model(**kwargs, logits_to_keep=last.to(self.device)).logits[:, 0, :]
        except TypeError:  # a model class without logits_to_keep
            full = self.model(**kwargs).logits
            logits = full[torch.arange(n), last[:, 0].to(full.device)]
        return torch.log_softmax(logits.float(), dim=-1)
