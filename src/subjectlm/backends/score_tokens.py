"""Pure token helpers for scoring, shared by every scorer (no torch: the GGUF path imports this).

A scorer answers three kinds of request: the log-prob of each continuation's *first* token right
after a prompt (letter mode), the summed log-prob of each continuation's tokens after a context
(cloze, QA references, the judge), and whole texts read in windows (perplexity, score_rolling.py). Both need the same care at the boundary between prompt and continuation, which
is tokenization and lives here; the forwards live in score_hf.py, score_llamacpp.py, score_vllm.py.
"""

from __future__ import annotations

from typing import Callable, Sequence

from subjectlm.backends.text import chat_text

Encode = Callable[..., list[int]]  # encode(text, add_special_tokens) -> token ids


def common_prefix_length(seqs: Sequence[Sequence[int]]) -> int:
    """Length of the token prefix shared by all sequences, leaving each at least one token of its own."""
    if not seqs:
        return 0
    limit = min(len(s) for s in seqs) - 1
    first = seqs[0]
    n = 0
    while n < limit and all(s[n] == first[n] for s in seqs):
        n += 1
    return max(n, 0)


def first_added_tokens(encode: Encode, tail: str, continuations: Sequence[str]) -> list[int]:
    """For each continuation, the first token that tail+continuation adds to tail's tokens."""
    context = encode(tail, add_special_tokens=False)
    ids = []
    for cont in continuations:
        whole = encode(tail + cont, add_special_tokens=False)
        if whole[: len(context)] == context and len(whole) > len(context):
            ids.append(whole[len(context)])
        else:  # the continuation merged into the prompt's last token: score it on its own
            ids.append(encode(cont, add_special_tokens=False)[0])
    return ids


class ContinuationIds:
    """The token each continuation starts with *in context*, cached per (prompt tail, continuations).

    "A" alone may tokenize differently from "A" after "答案：" (SentencePiece adds a word-start
    marker; some BPEs have distinct "A" and " A" tokens), so each continuation is found as the
    first token that prompt+continuation adds to prompt. The last characters decide how the
    letter tokenizes; the whole 3000-token prompt is not needed."""

    def __init__(self, encode: Encode, distinct: bool = True):
        self.encode, self.distinct = encode, distinct
        self._cache: dict[tuple[str, tuple[str, ...]], list[int]] = {}

    def __call__(self, prompt: str, continuations: Sequence[str]) -> list[int]:
        from subjectlm.backends import BackendUnavailable

        tail = prompt[-64:]
        key = (tail, tuple(continuations))
        if key not in self._cache:
            ids = first_added_tokens(self.encode, tail, continuations)
            if self.distinct and len(set(ids)) != len(ids):
                raise BackendUnavailable(f"continuations {list(continuations)} share a first token {ids}")
            self._cache[key] = ids
        return self._cache[key]


def encode_pair(encode: Encode, context: str, continuation: str, add_special_tokens: bool = True,
                move_whitespace: bool = True) -> tuple[list[int], list[int]]:
    """Context tokens and continuation tokens, split as lm-eval splits them (`HFLM._encode_pair`):
    whitespace at the end of the context moves to the front of the continuation, context and
    context+continuation are tokenized apart, and the continuation is what the whole adds after
    the context's token count (so a BPE merge across the boundary cannot shift the context).
    `move_whitespace=False` leaves the context's trailing whitespace in the context (a chat
    template's newline after the assistant header belongs to the template, not to the answer)."""
    spaces = len(context) - len(context.rstrip())
    if spaces and move_whitespace:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    context_ids = encode(context, add_special_tokens)
    whole = encode(context + continuation, add_special_tokens)
    return context_ids, whole[len(context_ids):]


def encode_requests(encode: Encode, contexts: Sequence[str], continuations: Sequence[Sequence[str]],
                    add_special_tokens: bool = True,
                    move_whitespace: bool = True) -> tuple[list[list[int]], list[list[list[int]]]]:
    """Per context its tokens, and per option its continuation tokens."""
    context_ids, option_ids = [], []
    for context, options in zip(contexts, continuations):
        pairs = [encode_pair(encode, context, option, add_special_tokens, move_whitespace) for option in options]
        context_ids.append(pairs[0][0] if pairs else encode(context, add_special_tokens))
        option_ids.append([ids for _, ids in pairs])
    return context_ids, option_ids


class ContinuationSums:
    """`loglikelihood` and `score_continuations` (the cloze sums alone) for a scorer that has `encode` and
    `_continuation_sums(context_ids, option_ids)` (each option's summed log-prob given its context)."""

    def loglikelihood(self, contexts: Sequence[str], continuations: Sequence[Sequence[str]],
                      add_special_tokens: bool = True, move_whitespace: bool = True) -> list:
        """For each context, each continuation's summed log-prob and token count."""
        context_ids, option_ids = encode_requests(self.encode, contexts, continuations, add_special_tokens,
                                                  move_whitespace)
        return with_counts(self._continuation_sums(context_ids, option_ids), option_ids)

    def score_continuations(self, contexts: Sequence[str], continuations: Sequence[Sequence[str]],
                            add_special_tokens: bool = True) -> list[list[float]]:
        return [[score.logprob for score in row]
                for row in self.loglikelihood(contexts, continuations, add_special_tokens)]


def with_counts(sums: Sequence[Sequence[float]], option_ids: Sequence[Sequence[Sequence[int]]]) -> list:
    """Each summed log-prob beside its continuation's token count, as LogLikelihoods."""
    from subjectlm.backends import LogLikelihood

    return [[LogLikelihood(float(s), len(ids)) for s, ids in zip(row, options)]
            for row, options in zip(sums, option_ids)]


class TokenizerText:
    """Text to tokens through a transformers tokenizer: shared by the hf and vllm scorers."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.continuation_ids = ContinuationIds(self.encode)  # (prompt, continuations) -> first token ids

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"])

    def rolling_tokens(self, text: str, prefix: bool) -> list[int]:
        """The tokens score_rolling reads a text as (score_rolling.rolling_tokens): lm-eval's prefix is
        the tokenizer's BOS, or its EOS when it has none."""
        from subjectlm.backends.score_rolling import rolling_tokens

        return rolling_tokens(self.encode, text, prefix, self.tokenizer.bos_token_id, self.tokenizer.eos_token_id)

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        from subjectlm.backends import BackendUnavailable

        if not getattr(self.tokenizer, "chat_template", None):
            raise BackendUnavailable("this model's tokenizer has no chat template: drop --with_prompt")
        # Rendered to text (the template writes BOS itself if the model wants one); callers
        # then tokenize it with add_special_tokens=False so BOS is not added a second time.
        return chat_text(self.tokenizer, messages)
