"""The llama.cpp backend: a GGUF file (e.g. a quantized export) through llama-cpp-python.

So a quantized model's exam score can be set beside its source's. Prefix reuse
is llama.cpp's own: the subject's shared prefix is decoded once; for each question
the context is cut back to the prefix (`n_tokens`; `eval` drops the KV cells
after it) and only the question's tokens are decoded. Logits are the context's raw
last-token logits, never a sampler's.

Cloze (`score_continuations`) reuses two levels the same way: the subject prefix once,
each question once, and each option decoded in one batch after the question's cells
(the previous option's cells dropped first), with logits kept for the option's positions
only: the Llama object keeps `logits_all=False` (a vocabulary row per position of an 8k
context would be gigabytes), so the option batch is sent through its context directly.
Batched, not token by token: llama.cpp runs other kernels for a one-token batch, and on
the default Q4_1 file such sums drifted by up to 0.3 from one batched decode of the whole
text. So a multi-token option is decoded together with the question's last token
(re-decoded at its own position), a batch of at least two; a one-token option is read
from the question's own decode.
"""

from __future__ import annotations

from typing import Sequence

from subjectlm.eval.backends import BackendUnavailable
from subjectlm.eval.backends.hf import common_prefix_length, first_added_tokens


class LlamaCppBackend:
    def __init__(self, model: str, batch_size: int = 8, n_ctx: int = 8192, n_threads: int | None = None,
                 prefix_reuse: bool = True, **_ignored):
        try:
            import llama_cpp
        except ImportError:
            raise BackendUnavailable("the llamacpp backend needs llama-cpp-python: pip install llama-cpp-python") from None
        import numpy as np

        from subjectlm.models import resolve_model

        path = resolve_model(model)
        if not str(path).endswith(".gguf"):
            raise BackendUnavailable(f"{path}: the llamacpp backend reads a .gguf file")
        self._np = np
        self.llm = llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_batch=512, logits_all=False,
                                   n_threads=n_threads, verbose=False)
        self.prefix_reuse = prefix_reuse
        self._cont_cache: dict[tuple[str, tuple[str, ...]], list[int]] = {}

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=add_special_tokens, special=True)

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise BackendUnavailable("this GGUF file has no chat template: drop --with_prompt")
        vocab = self.llm
        bos = vocab.detokenize([vocab.token_bos()], special=True).decode("utf-8", "ignore") if vocab.token_bos() >= 0 else ""
        eos = vocab.detokenize([vocab.token_eos()], special=True).decode("utf-8", "ignore") if vocab.token_eos() >= 0 else ""
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        return env.from_string(template).render(messages=messages, add_generation_prompt=True,
                                                bos_token=bos, eos_token=eos)

    def continuation_ids(self, prompt: str, continuations: Sequence[str]) -> list[int]:
        """As HFBackend.continuation_ids: the first token each continuation adds after the prompt's tail."""
        tail = prompt[-64:]
        key = (tail, tuple(continuations))
        if key not in self._cont_cache:
            self._cont_cache[key] = first_added_tokens(self.encode, tail, continuations)
        return self._cont_cache[key]

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

    def score_next(self, prompts: Sequence[str], continuations: Sequence[str],
                   add_special_tokens: bool = True) -> list[list[float]]:
        seqs = [self.encode(p, add_special_tokens) for p in prompts]
        prefix_len = self._eval_shared_prefix(seqs)
        out = []
        for text, seq in zip(prompts, seqs):
            self.llm.n_tokens = prefix_len  # the next eval drops the previous question's cells
            self.llm.eval(seq[prefix_len:])
            logprobs = self._last_logprobs()
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

    def score_continuations(self, contexts: Sequence[str], continuations: Sequence[Sequence[str]],
                            add_special_tokens: bool = True) -> list[list[float]]:
        from subjectlm.eval.backends.continuations import encode_requests

        context_ids, option_ids = encode_requests(self.encode, contexts, continuations, add_special_tokens)
        prefix_len = self._eval_shared_prefix(context_ids)
        out = []
        for context, options in zip(context_ids, option_ids):
            self.llm.n_tokens = prefix_len  # the next eval drops the previous question's cells
            self.llm.eval(context[prefix_len:])
            first = self._last_logprobs()
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

    def generate(self, prompts: Sequence[str], max_new_tokens: int, add_special_tokens: bool = True) -> list[str]:
        replies = []
        for text in prompts:
            self.llm.reset()
            new: list[int] = []
            for token in self.llm.generate(self.encode(text, add_special_tokens), temp=0.0, top_k=1, reset=True):
                if self.llm.token_eos() == token or len(new) >= max_new_tokens:
                    break
                new.append(token)
            replies.append(self.llm.detokenize(new).decode("utf-8", "ignore"))
        return replies
