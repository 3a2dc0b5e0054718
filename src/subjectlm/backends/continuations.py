"""Log-likelihoods of continuations on transformers (HFScorer's cloze scoring), with two levels of reuse.

A cloze request is (context, continuation): the question's prompt, and one option's text. Its
score is the summed log-prob of the continuation's tokens after the context. Tokens are split as
lm-eval splits them (`HFLM._encode_pair`): whitespace at the end of the context moves to the
front of the continuation, the context and context+continuation are tokenized separately, and the
continuation is what the whole adds after the context's token count (score_tokens.encode_pair).
So the token before the first continuation token is the context's own last token, every option of a question shares the same
context tokens, and a BPE merge across the boundary cannot shift the context.

Reuse, level 1: all questions of a subject share the header and shots; that token prefix runs
once (as in letter mode). Level 2: the four options of a question share the question's own
tokens. Where shared-prefix attention applies (see shared_prefix.py), a batch of questions runs
once against the batch-1 prefix, its cache then holds only the questions' own keys/values, and the
option rows run against both: the prefix (batch 1, unmasked), their question's keys (by index,
padding masked) and their own tokens (causal). The question row's last position gives each
option's first token; an option row carries the option's tokens but its last, whose prediction is
not needed. Elsewhere (sliding-window or soft-capped models) each option row carries its question's
own tokens again, after an expanded copy of the prefix cache, as letter mode's fallback does.

Only the positions whose next token is scored are projected onto the vocabulary
(`logits_to_keep` as a boolean mask), and their log-probs are read as logit - logsumexp, so no
second vocabulary-sized tensor is made.
"""

from __future__ import annotations

from typing import Sequence

from subjectlm.backends.score_tokens import common_prefix_length
from subjectlm.backends.shared_prefix import QuestionKV, prefix_key_values


def _scored(logits, targets: list[int]) -> list[float]:
    """log-softmax of each row of logits [N, V] at its target token, without a second [N, V] tensor."""
    import torch

    logits = logits.float()
    index = torch.tensor(targets, device=logits.device).unsqueeze(1)
    return (logits.gather(1, index) - logits.logsumexp(-1, keepdim=True)).squeeze(1).tolist()


def _run_rows(backend, rows: Sequence[Sequence[int]], starts: Sequence[int], keep: Sequence[Sequence[int]],
              **kw):
    """Forward right-padded rows (row r at positions starts[r]...); the logits [N, V] of the kept positions
    (row-major), and the output. `kw` goes to the model (prefix_kv, question_kv, cache, attention_mask)."""
    import torch

    n, width = len(rows), max(len(r) for r in rows)
    input_ids = torch.full((n, width), backend.pad_id, dtype=torch.long)
    wanted = torch.zeros((n, width), dtype=torch.bool)
    for r, (row, positions) in enumerate(zip(rows, keep)):
        input_ids[r, : len(row)] = torch.tensor(list(row))
        wanted[r, list(positions)] = True
    position_ids = torch.tensor(list(starts)).unsqueeze(1) + torch.arange(width).unsqueeze(0)
    device = backend.device
    kwargs = dict(input_ids=input_ids.to(device), position_ids=position_ids.to(device), **kw)
    try:
        out = backend.model(**kwargs, logits_to_keep=wanted.to(device))
        logits = out.logits
    except TypeError:  # a model class without logits_to_keep
        out = backend.model(**kwargs)
        logits = out.logits[wanted.to(out.logits.device)]
    return logits, out


def continuation_logprobs(backend, contexts: Sequence[Sequence[int]],
                          continuations: Sequence[Sequence[Sequence[int]]]) -> list[list[float]]:
    """Summed log-prob of each continuation's tokens after its context; an empty continuation gets -inf
    (an option with no tokens of its own cannot be chosen)."""
    import torch

    results = [[0.0 if len(c) else float("-inf") for c in options] for options in continuations]
    if not contexts:
        return results
    prefix_len = common_prefix_length(contexts) if backend.prefix_reuse else 0
    with torch.inference_mode():
        prefix_cache = backend.prefix_cache(contexts[0][:prefix_len]) if prefix_len else None
        shared = prefix_key_values(prefix_cache) if backend.shared_prefix and prefix_cache is not None else None
        if shared is not None:
            _two_level(backend, contexts, continuations, prefix_len, shared, results)
        else:
            _one_level(backend, contexts, continuations, prefix_len, prefix_cache, results)
    return results


def _two_level(backend, contexts, continuations, prefix_len: int, shared, results) -> None:
    import torch

    order = sorted(range(len(contexts)), key=lambda i: -len(contexts[i]))  # longest first: peak memory first
    for start in range(0, len(order), backend.batch_size):
        batch = order[start:start + backend.batch_size]
        own = [contexts[i][prefix_len:] for i in batch]
        # The questions' own tokens once; their cache keeps only those keys/values (the prefix is shared).
        logits, out = _run_rows(backend, own, [prefix_len] * len(batch), [[len(q) - 1] for q in own],
                                prefix_kv=shared, use_cache=True)
        firsts = [(b, j, options[0]) for b, i in enumerate(batch)
                  for j, options in enumerate(continuations[i]) if options]
        scores = _scored(logits[[b for b, _, _ in firsts]], [t for _, _, t in firsts])
        for (b, j, _), score in zip(firsts, scores):
            results[batch[b]][j] += score
        cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
        layers = prefix_key_values(cache)
        lengths = torch.tensor([len(q) for q in own], device=backend.device)
        # Option rows: the option's tokens but its last, each reading its question through the index;
        # longest first and batch_size rows at a time, so rows of a forward have similar lengths (less padding).
        rows = [(b, j) for b, i in enumerate(batch) for j, options in enumerate(continuations[i]) if len(options) > 1]
        rows.sort(key=lambda r: -len(continuations[batch[r[0]]][r[1]]))
        for chunk_start in range(0, len(rows), backend.batch_size):
            chunk = rows[chunk_start:chunk_start + backend.batch_size]
            tokens = [continuations[batch[b]][j] for b, j in chunk]
            question_kv = QuestionKV(layers, torch.tensor([b for b, _ in chunk], device=backend.device), lengths)
            logits, _ = _run_rows(backend, [t[:-1] for t in tokens], [len(contexts[batch[b]]) for b, _ in chunk],
                                  [range(len(t) - 1) for t in tokens], prefix_kv=shared, question_kv=question_kv,
                                  use_cache=False)
            scores = _scored(logits, [x for t in tokens for x in t[1:]])
            k = 0
            for (b, j), t in zip(chunk, tokens):
                results[batch[b]][j] += sum(scores[k:k + len(t) - 1])
                k += len(t) - 1


def _one_level(backend, contexts, continuations, prefix_len: int, prefix_cache, results) -> None:
    """Each (question, option) row carries the question's own tokens and the option's, after the prefix."""
    import torch

    from subjectlm.backends.score_hf import _expand, _truncate

    rows = [(i, j) for i, options in enumerate(continuations) for j, c in enumerate(options) if c]
    rows.sort(key=lambda r: -(len(contexts[r[0]]) + len(continuations[r[0]][r[1]])))
    expanded: dict[int, object] = {}
    for start in range(0, len(rows), backend.batch_size):
        chunk = rows[start:start + backend.batch_size]
        full = [list(contexts[i][prefix_len:]) + list(continuations[i][j]) for i, j in chunk]
        own = [len(contexts[i]) - prefix_len for i, _ in chunk]
        width = max(len(f) - 1 for f in full)
        mask = torch.zeros((len(chunk), prefix_len + width), dtype=torch.long)
        mask[:, :prefix_len] = 1
        for r, f in enumerate(full):
            mask[r, prefix_len: prefix_len + len(f) - 1] = 1
        kw = {"attention_mask": mask.to(backend.device), "use_cache": prefix_cache is not None}
        cache = None
        if prefix_cache is not None:
            cache = expanded.get(len(chunk))
            if cache is None:
                expanded.clear()  # one expanded copy at a time: peak memory
                cache = expanded[len(chunk)] = _expand(prefix_cache, len(chunk))
            kw[backend.cache_kw] = cache
        logits, _ = _run_rows(backend, [f[:-1] for f in full], [prefix_len] * len(chunk),
                              [range(n - 1, len(f) - 1) for n, f in zip(own, full)], **kw)
        scores = _scored(logits, [x for n, f in zip(own, full) for x in f[n:]])
        k = 0
        for (i, j), n, f in zip(chunk, own, full):
            results[i][j] += sum(scores[k:k + len(f) - n])
            k += len(f) - n
        if cache is not None and not _truncate(cache, prefix_len):
            expanded.clear()
