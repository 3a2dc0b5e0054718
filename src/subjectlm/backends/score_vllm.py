"""Scoring on vLLM (GPU machines): the same exam scores from vLLM's engine.

Each letter is scored by its own one-token request whose only allowed token is that letter: vLLM
then returns the letter's log-probability, and by default (logprobs_mode "raw_logprobs") it is taken
from the raw logits, before the whitelist or any other processor touches them. So the numbers are
the model's plain next-token log-probs, like the other backends' and unlike a top-k list, which
can miss a letter. The four requests of a question, and all questions of a subject, share their
prompt's KV blocks through vLLM's automatic prefix caching, so the shared shots are computed once.

Cloze (`score_continuations`): one request per option whose prompt is context+continuation, with
`prompt_logprobs=0`, which returns each prompt token's own log-prob from the raw logits; the
continuation's are summed. Tokens split as in the hf scorer (score_tokens.encode_pair). vLLM
does not read cached prefix blocks for a request that asks for prompt log-probs (they need every
position's logits), so cloze here recomputes each prompt: correct, not fast.

Whole texts (`score_rolling`): one prompt-logprob request per window (score_rolling.py's windows).

Not run on this project's CPU-only machines: a unit test drives the glue through a stand-in engine.
"""

from __future__ import annotations

from typing import Sequence

from subjectlm.backends.score_tokens import ContinuationSums, TokenizerText


class VLLMScorer(ContinuationSums, TokenizerText):
    """Scoring over vllm.py's already started engine (one engine for generation and scores)."""

    def __init__(self, vllm, llm):
        super().__init__(llm.get_tokenizer())
        self.vllm, self.llm = vllm, llm

    def score_next(self, prompts: Sequence[str], continuations: Sequence[str],
                   add_special_tokens: bool = True) -> list[list[float]]:
        requests, params, wanted = [], [], []
        for text in prompts:
            ids = self.encode(text, add_special_tokens)
            letters = self.continuation_ids(text, continuations)
            wanted.append(letters)
            for token in letters:
                requests.append({"prompt_token_ids": ids})
                params.append(self.vllm.SamplingParams(max_tokens=1, temperature=0.0, logprobs=0,
                                                       allowed_token_ids=[token]))
        outputs = self.llm.generate(requests, params, use_tqdm=False)
        scores, k = [], 0
        for letters in wanted:
            row = []
            for token in letters:
                step = outputs[k].outputs[0].logprobs[0]  # {token id: Logprob} of the one generated token
                row.append(float(step[token].logprob))
                k += 1
            scores.append(row)
        return scores

    def _continuation_sums(self, context_ids, option_ids) -> list[list[float]]:
        requests, spans = [], []
        for context, options in zip(context_ids, option_ids):
            for tokens in options:
                if tokens:
                    requests.append({"prompt_token_ids": list(context) + list(tokens)})
                    spans.append((len(context), tokens))
        params = self.vllm.SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
        outputs = iter(self.llm.generate(requests, params, use_tqdm=False) if requests else [])
        scores = []
        for context, options in zip(context_ids, option_ids):
            row = []
            for tokens in options:
                if not tokens:  # no tokens of its own: cannot be chosen (as in the hf backend)
                    row.append(float("-inf"))
                    continue
                # prompt_logprobs[i]: {token id: Logprob} at prompt position i (None at 0), the actual token included
                steps = next(outputs).prompt_logprobs
                row.append(sum(float(steps[len(context) + k][t].logprob) for k, t in enumerate(tokens)))
            scores.append(row)
        return scores

    def score_rolling(self, texts: Sequence[str], max_length: int | None = None, stride: int | None = None,
                      prefix: bool = True) -> list:
        """Each text's summed log-prob and token count, read in windows (score_rolling.py): one request
        per window, its prompt the window plus the last token it predicts, `prompt_logprobs=0`."""
        from subjectlm.backends import LogLikelihood
        from subjectlm.backends.score_rolling import rolling_windows, window_settings

        if max_length is None:  # the prompt is a window plus one token: both must fit the engine's length
            max_length = self.llm.llm_engine.model_config.max_model_len - 1
        max_length, stride = window_settings(max_length, stride, max_length)
        requests, counted = [], []
        for t, text in enumerate(texts):
            ids = self.rolling_tokens(text, prefix)
            for begin, end, new in rolling_windows(len(ids), max_length, stride):
                requests.append({"prompt_token_ids": list(ids[begin:end + 1])})
                counted.append((t, new))
        params = self.vllm.SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
        outputs = self.llm.generate(requests, params, use_tqdm=False) if requests else []
        totals, counts = [0.0] * len(texts), [0] * len(texts)
        for output, request, (t, new) in zip(outputs, requests, counted):
            ids = request["prompt_token_ids"]
            steps = output.prompt_logprobs  # {token id: Logprob} per prompt position (None at 0)
            totals[t] += sum(float(steps[k][ids[k]].logprob) for k in range(len(ids) - new, len(ids)))
            counts[t] += new
        return [LogLikelihood(total, n) for total, n in zip(totals, counts)]
