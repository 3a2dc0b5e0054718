"""Any OpenAI-compatible server as a backend: vLLM, llama.cpp's server, `subjectlm serve`, a hosted API.

A chat prompt (a message list) goes to /v1/chat/completions, a raw string to /v1/completions. Many prompts
are sent at once, at most `concurrency` in flight. Each request has its own timeout and is retried with
exponential backoff and full jitter on 429, 5xx, timeouts and dropped connections; a `Retry-After` header
(429/503) is waited for instead of the backoff. Other 4xx are not retried: 400 is the request's fault, and
401/403/404 (key, URL or model name) would fail the same way every time (`EndpointError.fatal`).

Reasoning models' thinking is dropped: a separate `reasoning_content` is never read and `<think>…</think>`
blocks are cut from the text (also from a stream). JSON mode (`json_mode=True`) sends
`response_format: {"type": "json_object"}`; a server that rejects that with a 400 is asked again without
it, and not offered it again.

The API key is read from the environment variable named by `api_key_env` when the backend is made, and is
kept only in the HTTP client's headers: never in an attribute, a repr, an error message or a record.
"""

from __future__ import annotations

import email.utils
import json
import os
import random
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator, Sequence

from subjectlm.backends import Answer, BackendUnavailable, GenParams, Piece, Prompt, per_prompt
from subjectlm.errors import UserError

RETRY_STATUS = (408, 409, 429, 500, 502, 503, 504)  # worth asking again; other statuses fail the same way twice
FATAL_STATUS = (401, 403, 404)                     # a wrong key, URL or model name: every request would fail
MAX_RETRY_AFTER = 300.0                            # seconds: a longer Retry-After is capped, not trusted blindly

_THINK = re.compile(r"<think>.*?</think>", re.DOTALL)


class EndpointError(UserError, RuntimeError):
    """A request that failed for good. `reason` is a short code to count failures by: `http_429`, `http_500`,
    `timeout`, `connection`, `bad_response`; `fatal` when every later request would fail the same way."""

    def __init__(self, message: str, reason: str, status: int | None = None):
        super().__init__(message)
        self.reason = reason
        self.status = status
        self.fatal = status in FATAL_STATUS


def strip_reasoning(text: str) -> str:
    """The reply without `<think>…</think>` blocks. A reply that only closes one (the template opened it
    in the prompt) loses everything up to `</think>`; one cut off while thinking is empty."""
    text = _THINK.sub("", text)
    if "</think>" in text:
        text = text.rsplit("</think>", 1)[1]
    if "<think>" in text:
        text = text.split("<think>", 1)[0]
    return text.strip()


def base_url(url: str) -> str:
    """The API root (`…/v1`) of a server given as its root, its /v1, or a full completions URL."""
    url = url.rstrip("/")
    for tail in ("/chat/completions", "/completions"):
        if url.endswith(tail):
            return url[: -len(tail)]
    return url if url.endswith("/v1") else url + "/v1"


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """A Retry-After header in seconds (it is either a number of seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError):
            return None
        seconds = when - (time.time() if now is None else now)
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


class ThinkFilter:
    """Drops `<think>…</think>` from a stream of text pieces, holding back only what may be a tag's start."""

    def __init__(self):
        self.inside = False
        self.held = ""

    def feed(self, text: str) -> str:
        out, buf = [], self.held + text
        while buf:
            tag = "</think>" if self.inside else "<think>"
            at = buf.find(tag)
            if at >= 0:
                if not self.inside:
                    out.append(buf[:at])
                buf, self.inside = buf[at + len(tag):], not self.inside
                continue
            keep = next((k for k in range(min(len(tag) - 1, len(buf)), 0, -1) if tag.startswith(buf[-k:])), 0)
            if not self.inside:
                out.append(buf[: len(buf) - keep])
            buf = buf[len(buf) - keep:]
            break
        self.held = buf
        return "".join(out)

    def flush(self) -> str:
        held, self.held = ("" if self.inside else self.held), ""
        return held


class OpenAIBackend:
    name = "openai"

    def __init__(self, url: str, model: str | None = None, api_key_env: str | None = None, concurrency: int = 8,
                 timeout: float = 120.0, max_retries: int = 5, *, backoff: float = 1.0, max_backoff: float = 60.0,
                 retry_seed: int | None = None):
        try:
            import httpx
        except ImportError:
            raise UserError("an OpenAI-compatible server needs httpx: pip install 'subjectlm[serve]'") from None
        if not str(url).startswith(("http://", "https://")):
            raise UserError(f"model: {url} is not an http(s) URL of an OpenAI-compatible server")
        if concurrency < 1:
            raise UserError(f"concurrency: must be at least 1, got {concurrency}")
        self.url = base_url(str(url))
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.backoff, self.max_backoff = backoff, max_backoff
        self.rng = random.Random(retry_seed)
        self.rng_lock = threading.Lock()
        self.json_mode_ok = True  # until the server rejects response_format once
        self.retried: dict[str, int] = {}  # retries made, by reason (`http_429`, `timeout`, ...)
        self.slots = threading.BoundedSemaphore(concurrency)
        headers = {}
        key = os.environ.get(api_key_env) if api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        limits = httpx.Limits(max_connections=concurrency + 2, max_keepalive_connections=concurrency + 2)
        self.client = httpx.Client(timeout=httpx.Timeout(timeout), headers=headers, limits=limits)
        self._httpx = httpx
        self._model = model
        self.model_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"OpenAIBackend({self.url!r}, model={self._model!r}, concurrency={self.concurrency})"

    @property
    def model_id(self) -> str:
        """The model name sent with each request: the one given, else the first the server lists."""
        with self.model_lock:
            if self._model is None:
                self._model = self._served_model()
        return self._model

    def _served_model(self) -> str:
        try:
            return str(self._send("GET", "/models", None)["data"][0]["id"])
        except (EndpointError, KeyError, IndexError, TypeError):
            return "default"

    # ---- one request, with retries

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after
        with self.rng_lock:  # full jitter: uniform in [0, backoff * 2^attempt], capped
            return self.rng.uniform(0, min(self.max_backoff, self.backoff * 2 ** attempt))

    def _send(self, method: str, path: str, body: dict | None, stream: bool = False):
        """The parsed JSON reply (or, with `stream`, the open response) after retries; EndpointError if none."""
        httpx = self._httpx
        for attempt in range(self.max_retries + 1):
            retry_after = None
            try:
                request = self.client.build_request(method, self.url + path, json=body)
                response = self.client.send(request, stream=stream)
            except httpx.TimeoutException:
                reason, message, status = "timeout", f"no reply from {self.url}{path} in time", None
            except httpx.TransportError as exc:
                reason, message, status = "connection", f"{self.url}{path}: {type(exc).__name__}: {exc}", None
            else:
                if response.status_code < 400:
                    if stream:
                        return response
                    try:
                        return response.json()
                    except ValueError:
                        raise EndpointError(f"{self.url}{path}: the reply is not JSON", "bad_response") from None
                status = response.status_code
                if stream:
                    response.read()
                reason = f"http_{status}"
                message = f"{self.url}{path}: HTTP {status}: {_error_text(response)}"
                retry_after = retry_after_seconds(response.headers.get("retry-after"))
                response.close()
                if status not in RETRY_STATUS:
                    raise EndpointError(message, reason, status)
            if attempt == self.max_retries:
                raise EndpointError(f"{message} (after {self.max_retries} retries)", reason, status)
            with self.rng_lock:
                self.retried[reason] = self.retried.get(reason, 0) + 1
            time.sleep(self._delay(attempt, retry_after))
        raise AssertionError("unreachable")

    def _body(self, prompt: Prompt, params: GenParams, json_mode: bool, stream: bool) -> tuple[str, dict]:
        body: dict[str, Any] = {"model": self.model_id, "max_tokens": params.max_tokens,
                                "temperature": params.temperature}
        if params.top_p != 1.0:
            body["top_p"] = params.top_p
        if params.stop:
            body["stop"] = list(params.stop)
        if params.seed is not None:
            body["seed"] = params.seed
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        if isinstance(prompt, str):
            return "/completions", {**body, "prompt": prompt}
        if json_mode and self.json_mode_ok:
            body["response_format"] = {"type": "json_object"}
        return "/chat/completions", {**body, "messages": [dict(m) for m in prompt]}

    def complete(self, prompt: Prompt, params: GenParams, json_mode: bool = False) -> Answer:
        """One whole answer (at most `concurrency` of these run at once); EndpointError when it fails for good."""
        with self.slots:
            path, body = self._body(prompt, params, json_mode, stream=False)
            try:
                reply = self._send("POST", path, body)
            except EndpointError as exc:
                if not (exc.status == 400 and "response_format" in body):
                    raise
                body.pop("response_format")
                reply = self._send("POST", path, body)  # accepted without it: the server has no JSON mode
                self.json_mode_ok = False
        try:
            choice = reply["choices"][0]
            text = choice["message"].get("content") if "message" in choice else choice.get("text")
            usage = reply.get("usage") or {}
            return Answer(strip_reasoning(text or ""), choice.get("finish_reason") or "stop",
                          int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
        except (KeyError, IndexError, TypeError, AttributeError, ValueError):
            raise EndpointError(f"{self.url}{path}: a reply without choices: {str(reply)[:200]}",
                                "bad_response") from None

    def generate(self, prompts: Sequence[Prompt], params: GenParams | Sequence[GenParams],
                 json_mode: bool = False) -> list[Answer]:
        """Whole answers in the prompts' order, `concurrency` requests in flight; the first failure is raised."""
        params = per_prompt(params, len(prompts))
        if len(prompts) <= 1:
            return [self.complete(p, q, json_mode) for p, q in zip(prompts, params)]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(prompts))) as pool:
            return list(pool.map(lambda pq: self.complete(pq[0], pq[1], json_mode), zip(prompts, params)))

    def stream(self, prompt: Prompt, params: GenParams, cancel: threading.Event | None = None) -> Iterator[Piece]:
        """Server-sent events as Pieces; thinking is dropped; the last piece has the finish reason and usage."""
        with self.slots:
            path, body = self._body(prompt, params, False, stream=True)
            response = self._send("POST", path, body, stream=True)
            think, finish, usage = ThinkFilter(), None, {}
            try:
                for line in response.iter_lines():
                    if cancel is not None and cancel.is_set():
                        finish = "cancelled"
                        break
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    event = json.loads(data)
                    usage = event.get("usage") or usage
                    for choice in event.get("choices") or []:
                        delta = choice.get("delta") or {}
                        text = think.feed(delta.get("content") or choice.get("text") or "")
                        finish = choice.get("finish_reason") or finish
                        if text:
                            yield Piece(text)
            except self._httpx.HTTPError as exc:
                raise EndpointError(f"{self.url}{path}: the stream broke: {exc}", "connection") from None
            finally:
                response.close()
            tail = think.flush() if finish != "cancelled" else ""
            yield Piece(tail, finish or "stop", int(usage.get("prompt_tokens") or 0),
                        int(usage.get("completion_tokens") or 0))

    # ---- what a remote server does not give

    def chat_prompt(self, messages):
        raise BackendUnavailable("an OpenAI-compatible server does not show its chat template: scoring needs a "
                                 "local model (a model directory or a .gguf)")

    def score_next(self, prompts, continuations, add_special_tokens=True):
        raise BackendUnavailable("an OpenAI-compatible server gives no raw log-probs here: scoring (exams) needs "
                                 "a local model (a model directory or a .gguf)")

    loglikelihood = score_continuations = score_next

    def score_rolling(self, texts, max_length=None, stride=None, prefix=True):
        raise BackendUnavailable("an OpenAI-compatible server gives no raw log-probs here: perplexity needs a local "
                                 "model (a model directory or a .gguf)")

    def close(self) -> None:
        self.client.close()


def _error_text(response) -> str:
    """The server's own error message, short (OpenAI style `{"error": {"message"}}`, else the body)."""
    try:
        error = response.json().get("error")
        message = error.get("message") if isinstance(error, dict) else error
    except (ValueError, AttributeError):
        message = None
    return str(message or response.text or response.reason_phrase)[:300]
