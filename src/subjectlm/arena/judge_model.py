"""A judge model compares two answers; every pair is judged in both orders (A/B swapped).

Two kinds of judge, one prompt (prompts.py):
- a local model directory (or `default`), run with transformers. In `score` mode (the default)
  the reply is prefilled with `Verdict: [[` and the four endings `A]]`, `B]]`, `tie]]`,
  `both bad]]` are scored by log-probability: one forward pass, no parsing, always a verdict,
  and the probabilities are kept in the record. In `generate` mode the judge writes a reply
  (greedy) that is parsed; a reply naming no verdict falls back to scoring.
- any OpenAI-compatible endpoint (`http://...`, e.g. `subjectlm serve`): the reply (temperature
  0) is parsed; a reply naming no verdict is recorded as a tie with `parsed: false`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from subjectlm.arena.config import JudgeConfig
from subjectlm.arena.prompts import VERDICT_PREFILL, VERDICT_TOKENS, judge_messages, parse_verdict
from subjectlm.arena.records import BATTLES_FILE, append_jsonl, battle_record, pending_pairs

# The text that completes VERDICT_PREFILL for each winner: "A]]", "B]]", "tie]]", "both bad]]".
ENDINGS = {winner: token[2:] for winner, token in VERDICT_TOKENS.items()}


def _messages(job: dict[str, Any]) -> list[dict[str, str]]:
    p = job["prompt"]
    return judge_messages(p["prompt"], job["answer_a"], job["answer_b"], p.get("reference"))


class LocalJudge:
    """A judge on the hf backend: `generate` for replies; scoring reads the backend's model directly
    (the backends' `score` method is still to come)."""

    def __init__(self, path: str, mode: str = "score", dtype: str = "auto", device: str | None = None,
                 max_new_tokens: int = 96, trust_remote_code: bool = False):
        from subjectlm.backends import open_backend

        self.backend = open_backend(path, "hf", dtype=dtype, device=device, trust_remote_code=trust_remote_code)
        self.tokenizer, self.model, self.device = self.backend.tokenizer, self.backend.model, self.backend.device
        self.mode = mode
        self.max_new_tokens = max_new_tokens

    def _chat(self, messages: list[dict[str, str]]) -> str:
        from subjectlm.backends.text import chat_text

        return chat_text(self.tokenizer, messages)

    def score(self, messages: list[dict[str, str]]) -> dict[str, float]:
        """Probability of each winner, from the log-probabilities of the four verdict endings."""
        import torch

        prefix = self._chat(messages) + VERDICT_PREFILL
        prefix_ids = self.tokenizer(prefix, add_special_tokens=False)["input_ids"]
        seqs, starts = [], []
        for ending in ENDINGS.values():
            ids = self.tokenizer(prefix + ending, add_special_tokens=False)["input_ids"]
            # where the ending's own tokens start: a BPE merge across the boundary moves it left
            start = 0
            while start < min(len(ids), len(prefix_ids)) and ids[start] == prefix_ids[start]:
                start += 1
            seqs.append(ids)
            starts.append(max(start, 1))
        width = max(len(s) for s in seqs)
        pad = self.tokenizer.pad_token_id or 0
        input_ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs], device=self.device)
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs], device=self.device)
        with torch.no_grad():
            logits = self.model(input_ids=input_ids, attention_mask=mask).logits.float()
        logprobs = torch.log_softmax(logits, dim=-1)
        totals = []
        for row, (ids, start) in enumerate(zip(seqs, starts)):
            positions = torch.arange(start, len(ids), device=self.device)
            targets = torch.tensor(ids[start:], device=self.device)
            totals.append(float(logprobs[row, positions - 1, targets].sum()))
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
    url = url.rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    if url.endswith("/v1"):
        return url + "/chat/completions"
    return url + "/v1/chat/completions"


class EndpointJudge:
    def __init__(self, url: str, model_name: str = "default", api_key: str | None = None,
                 max_new_tokens: int = 96, timeout: float = 120.0):
        try:
            import httpx
        except ImportError:
            from subjectlm.errors import UserError
            raise UserError("a judge endpoint needs httpx: pip install 'subjectlm[serve]'") from None

        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(timeout=timeout, headers=headers)
        self.url = endpoint_url(url)
        self.model_name = model_name
        self.max_new_tokens = max_new_tokens

    def verdict(self, job: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        body = {"model": self.model_name, "messages": _messages(job), "temperature": 0,
                "max_tokens": self.max_new_tokens}
        response = self.client.post(self.url, json=body)
        response.raise_for_status()
        text = response.json()["choices"][0]["message"]["content"] or ""
        winner = parse_verdict(text)
        return winner or "tie", {"mode": "endpoint", "reply": text, "parsed": winner is not None}


def make_judge(config: JudgeConfig):
    target = config.judge[len("model:"):].strip()
    if target.startswith(("http://", "https://")):
        return EndpointJudge(target, config.judge_model_name, os.environ.get(config.api_key_env),
                             config.max_new_tokens, config.request_timeout)
    return LocalJudge(target, config.judge_mode, config.dtype, config.device, config.max_new_tokens,
                      config.trust_remote_code)


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
