"""Scoring a GGUF file (e.g. a quantized export) through llama-cpp-python; no torch on this path.

So a quantized model's exam score can be set beside its source's. Prefix reuse
is llama.cpp's own: the subject's shared prefix is decoded once; for each question
the context is cut back to the prefix (`n_tokens`; `eval` drops the KV cells
after it) and only the question's tokens are decoded. Logits are the context's raw
last-token logits, never a sampler's.

Cloze (`loglikelihood`, `score_continuations`) reuses two levels the same way: the subject prefix once,
each question once, and each option decoded in one batch after the question's cells
(the previous option's cells dropped first), with logits kept for the option's positions
only: the Llama object keeps `logits_all=False` (a vocabulary row per position of an 8k
context would be gigabytes), so the option batch is sent through its context directly.
Batched, not token by token: llama.cpp runs other kernels for a one-token batch, and on
the default Q4_1 file such sums drifted by up to 0.3 from one batched decode of the whole
text. So a multi-token option is decoded together with the question's last token
(re-decoded at its own position), a batch of at least two; a one-token option is read
from the question's own decode.

Whole texts (`score_rolling`, windows as in score_rolling.py): each window is decoded from an empty
context, n_batch tokens at a time, with logits asked for only at the positions whose next token counts.
"""

from __future__ import annotations

from typing import Sequence

from subjectlm.backends import BackendUnavailable
from subjectlm.backends.score_tokens import (
    ContinuationIds,
    ContinuationSums,
    common_prefix_length,
)
from subjectlm.backends.text import chat_text


class GGUFTemplate:
    """The GGUF's own chat template behind the tokenizer interface chat_text() reads."""

    def __init__(self, llm):
        self.llm = llm
        self.chat_template = llm.metadata.get("tokenizer.chat_template")

    def _special(self, token: int) -> str:
        return self.llm.detokenize([token], special=True).decode("utf-8", "ignore") if token >= 0 else ""

    def apply_chat_template(self, messages, tokenize: bool = False, add_generation_prompt: bool = True) -> str:
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        return env.from_string(self.chat_template).render(
            messages=messages, add_generation_prompt=add_generation_prompt,
            bos_token=self._special(self.llm.token_bos()), eos_token=self._special(self.llm.token_eos()))


class LlamaCppScorer(ContinuationSums):
    """Scoring over llamacpp.py's already opened llama_cpp.Llama (one model in memory for both)."""

    def __init__(self, llm, prefix_reuse: bool = True):
        import numpy as np

        self._np = np
        self.llm = llm
        self.prefix_reuse = prefix_reuse
        self.template = GGUFTemplate(llm)
        # Letters are read as their first token in context; llama.cpp's vocabularies keep them distinct.
        self.continuation_ids = ContinuationIds(self.encode, distinct=False)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=add_special_tokens, special=True)

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        if not self.template.chat_template:
            raise BackendUnavailable("this GGUF file has no chat template: drop --with_prompt")
        return chat_text(self.template, messages)

    def _log_softmax(self, rows: int):
        """Log-softmax (float64) of the last decode's `rows` logit rows, over the vocabulary."""
        np = self._np
        logits = np.ctypeslib.as_array(self.llm._ctx.get_logits(), shape=(rows, self.llm.n_vocab())).astype(np.float64)
        top = logits.max(-1, keepdims=True)
        return logits - top - np.log(np.exp(logits - top).sum(-1, keepdims=True))

    def _last_logprobs(self):
        return self._log_softmax(1)[0]

    def _eval_shared_prefix(self, seqs: Sequence[Sequence[int]]) -> int:
        """Decode the tokens every sequence starts with once; return how many (0 without prefix reuse)."""
        prefix_len = common_prefix_length(seqs) if self.prefix_reuse else 0
        self.llm.reset()
        if prefix_len:
            self.llm.eval(seqs[0][:prefix_len])
        return prefix_len

    def _eval_after_prefix(self, seq: Sequence[int], prefix_len: int):
        """Decode one question's tokens after the shared prefix; its last position's log-probs."""
        self.llm.n_tokens = prefix_len  # the next eval drops the previous question's cells
        self.llm.eval(seq[prefix_len:])
        return self._last_logprobs()

    def score_next(self, prompts: Sequence[str], continuations: Sequence[str],
                   add_special_tokens: bool = True) -> list[list[float]]:
        seqs = [self.encode(p, add_special_tokens) for p in prompts]
        prefix_len = self._eval_shared_prefix(seqs)
        out = []
        for text, seq in zip(prompts, seqs):
            logprobs = self._eval_after_prefix(seq, prefix_len)
            out.append([float(logprobs[i]) for i in self.continuation_ids(text, continuations)])
        return out

    def _batch_logprobs(self, start: int, tokens: Sequence[int]):
        """Log-softmax rows [len(tokens), vocab] after decoding `tokens` at positions start... in one batch
        (the cells from `start` on dropped first), the question's cells before them kept."""
        llm = self.llm
        if len(tokens) > llm.n_batch:
            raise BackendUnavailable(f"an option of {len(tokens)} tokens exceeds n_batch={llm.n_batch}")
        llm._ctx.kv_cache_seq_rm(-1, start, -1)
        llm._batch.set_batch(batch=list(tokens), n_past=start, logits_all=True)
        llm._ctx.decode(llm._batch)
        llm.n_tokens = start  # the option's cells are not the context's: the next eval drops them
        return self._log_softmax(len(tokens))

    def _continuation_sums(self, context_ids, option_ids) -> list[list[float]]:
        prefix_len = self._eval_shared_prefix(context_ids)
        out = []
        for context, options in zip(context_ids, option_ids):
            first = self._eval_after_prefix(context, prefix_len)
            row = []
            for tokens in options:
                if not tokens:  # no tokens of its own: cannot be chosen (as in the hf backend)
                    row.append(float("-inf"))
                    continue
                if len(tokens) == 1:
                    row.append(float(first[tokens[0]]))
                    continue
                # The question's last token again, then the option's: a batch of two or more (see above).
                logprobs = self._batch_logprobs(len(context) - 1, [context[-1], *tokens[:-1]])
                row.append(float(sum(logprobs[k, t] for k, t in enumerate(tokens))))
            out.append(row)
        return out

    def score_rolling(self, texts: Sequence[str], max_length: int | None = None, stride: int | None = None,
                      prefix: bool = True) -> list:
        """Each text's summed log-prob and token count, read in windows (score_rolling.py); windows default
        to the context llama.cpp was opened with (n_ctx), which they may not exceed."""
        from subjectlm.backends.score_rolling import rolling_tokens, window_settings

        max_length, stride = window_settings(max_length, stride, self.llm.n_ctx())
        if max_length > self.llm.n_ctx():
            raise BackendUnavailable(f"windows of {max_length} tokens exceed llama.cpp's context n_ctx="
                                     f"{self.llm.n_ctx()}: open the model with a larger n_ctx")
        bos, eos = self.llm.token_bos(), self.llm.token_eos()
        return [self.rolling_logprob(rolling_tokens(self.encode, text, prefix, bos, eos), max_length, stride)
                for text in texts]

    def rolling_logprob(self, ids: Sequence[int], max_length: int, stride: int):
        """Summed log-prob and count of the tokens of `ids` that score_rolling.rolling_windows counts: each
        window decoded from an empty context in batches of n_batch, logits kept for the counted positions."""
        from subjectlm.backends import LogLikelihood
        from subjectlm.backends.score_rolling import rolling_windows

        llm, total, count = self.llm, 0.0, 0
        for begin, end, new in rolling_windows(len(ids), max_length, stride):
            window = list(ids[begin:end])
            llm.reset()
            llm._ctx.kv_cache_seq_rm(-1, 0, -1)
            for start in range(0, len(window), llm.n_batch):
                chunk = window[start:start + llm.n_batch]
                # logits only for the positions that predict a counted token (a vocabulary row each)
                first_kept = max(0, len(window) - new - start)
                llm._batch.set_batch(batch=chunk, n_past=start, logits_all=False)
                for k in range(len(chunk)):
                    llm._batch.batch.logits[k] = k >= first_kept
                llm._ctx.decode(llm._batch)
                kept = len(chunk) - min(first_kept, len(chunk))
                if kept:
                    logprobs = self._log_softmax(kept)
                    targets = ids[begin + start + len(chunk) - kept + 1: begin + start + len(chunk) + 1]
                    total += float(sum(logprobs[k, t] for k, t in enumerate(targets)))
            count += new
        llm.reset()
        return LogLikelihood(total, count)
