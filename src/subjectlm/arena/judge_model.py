"""A judge model compares two answers; every pair is judged in both orders (A/B swapped).

Two kinds of judge, one prompt (prompts.py):
- a local model directory (or `default`), run with transformers, or a .gguf on llama.cpp. In
  `score` mode (the default) the reply is prefilled with `Verdict: [[` and the four endings `A]]`,
  `B]]`, `tie]]`, `both bad]]` are scored by log-probability (the backend's `loglikelihood`: no
  parsing, always a verdict), and the probabilities are kept in the record. In `generate` mode the judge writes a reply
  (greedy) that is parsed; a reply naming no verdict falls back to scoring.
- any OpenAI-compatible endpoint (`http://...`, e.g. `subjectlm serve`): the reply (temperature
  0) is parsed; a reply naming no verdict is recorded as a tie with `parsed: false`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from subjectlm.arena.config import JudgeConfig
from subjectlm.arena.prompts import VERDICT_PREFILL, VERDICT_TOKENS, judge_messages, parse_verdict
from subjectlm.arena.records import BATTLES_FILE, append_jsonl, battle_record, pending_pairs
from subjectlm.backends.spec import ModelSpec

# The text that completes VERDICT_PREFILL for each winner: "A]]", "B]]", "tie]]", "both bad]]".
ENDINGS = {winner: token[2:] for winner, token in VERDICT_TOKENS.items()}


def _messages(job: dict[str, Any]) -> list[dict[str, str]]:
    p = job["prompt"]
    return judge_messages(p["prompt"], job["answer_a"], job["answer_b"], p.get("reference"))


class LocalJudge:
    """A judge on a local model (a model directory on transformers, a .gguf on llama.cpp): `generate` for
    replies; scoring is the backend's `loglikelihood` of each verdict ending after the prefill."""

    def __init__(self, spec: ModelSpec, mode: str = "score", max_new_tokens: int = 96):
        from subjectlm.backends import open_backend

        self.backend = open_backend(spec)
        self.tokenizer = getattr(self.backend, "tokenizer", None)
        self.model, self.device = getattr(self.backend, "model", None), getattr(self.backend, "device", None)
        self.mode = mode
        self.max_new_tokens = max_new_tokens

    def _chat(self, messages: list[dict[str, str]]) -> str:
        """The conversation in the judge's chat template (plain paragraphs without one), as every backend
        renders it; the template writes its own BOS."""
        from subjectlm.backends.text import chat_text

        holder = self.tokenizer if self.tokenizer is not None else self.backend.scorer.template
        return chat_text(holder, messages)

    def score(self, messages: list[dict[str, str]]) -> dict[str, float]:
        """Probability of each winner, from the log-probabilities of the four verdict endings."""
        prefix = self._chat(messages) + VERDICT_PREFILL
        row = self.backend.loglikelihood([prefix], [list(ENDINGS.values())], add_special_tokens=False)[0]
        totals = [score.logprob for score in row]
        top = max(totals)
        weights = [math.exp(t - top) for t in totals]
        return {w: x / sum(weights) for w, x in zip(ENDINGS, weights)}

    def reply(self, messages: list[dict[str, str]]) -> str:
        from subjectlm.backends import GenParams

        return self.backend.generate([messages], GenParams(max_tokens=self.max_new_tokens))[0].text

    def verdict(self, job: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        messages = _messages(job)
        if self.mode == "generate":
            text = self.reply(messages)
            winner = parse_verdict(text)
            if winner is not None:
                return winner, {"mode": "generate", "reply": text, "parsed": True}
            probs = self.score(messages)
            return max(probs, key=probs.get), {"mode": "generate+score", "reply": text, "parsed": False,
                                               "probs": {k: round(v, 4) for k, v in probs.items()}}
        probs = self.score(messages)
        return max(probs, key=probs.get), {"mode": "score", "probs": {k: round(v, 4) for k, v in probs.items()}}


def endpoint_url(url: str) -> str:
    """The chat-completions URL of an OpenAI-compatible server given as its root, its /v1, or in full."""
    from subjectlm.backends.openai import base_url

    return base_url(url) + "/chat/completions"


class EndpointJudge:
    """A judge behind an OpenAI-compatible URL, on the openai backend: retries with backoff (Retry-After
    honoured), reasoning stripped before the verdict is read, the key read from `api_key_env` only."""

    def __init__(self, url: str, model_name: str = "default", api_key_env: str | None = None,
                 max_new_tokens: int = 96, timeout: float = 120.0):
        from subjectlm.backends.openai import OpenAIBackend

        self.backend = OpenAIBackend(url, model_name, api_key_env=api_key_env, concurrency=1, timeout=timeout)
        self.max_new_tokens = max_new_tokens

    def verdict(self, job: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        from subjectlm.backends import GenParams

        text = self.backend.complete(_messages(job), GenParams(max_tokens=self.max_new_tokens, temperature=0.0)).text
        winner = parse_verdict(text)
        return winner or "tie", {"mode": "endpoint", "reply": text, "parsed": winner is not None}


def make_judge(config: JudgeConfig):
    target = config.judge[len("model:"):].strip()
    if target.startswith(("http://", "https://")):
        return EndpointJudge(target, config.judge_model_name, config.api_key_env,
                             config.max_new_tokens, config.request_timeout)
    return LocalJudge(config.model_spec(model=target), config.judge_mode, config.max_new_tokens)


def run_model_judge(config: JudgeConfig, judge=None) -> dict[str, Any]:
    """Judge every pending pair in both orders, appending one battle per verdict."""
    from tqdm import tqdm

    output_dir = Path(config.output_dir)
    jobs = pending_pairs(output_dir, config.judge, both_orders=True, models=config.models, seed=config.seed)
    if config.limit:
        jobs = jobs[: config.limit]
    counts = {"judged": 0, "unparsed": 0}
    if not jobs:
        return counts
    judge = judge or make_judge(config)
    for job in tqdm(jobs, desc="judging", unit="battle"):
        winner, extra = judge.verdict(job)
        append_jsonl(output_dir / BATTLES_FILE, battle_record(job, winner, config.judge, **extra))
        counts["judged"] += 1
        counts["unparsed"] += int(extra.get("parsed") is False)
    return counts
