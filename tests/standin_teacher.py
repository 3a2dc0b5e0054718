"""A stand-in OpenAI-compatible teacher on 127.0.0.1: every reply scripted by the test, every request counted.

    from standin_teacher import Reply, StandinTeacher, json_reply

    def script(request):                          # a Request in, a Reply (or str, or dict/list) out
        if "volcano" in request.prompt:
            return json_reply({"facts": [...]}, fence=True, think="let me see")
        if request.seen == 1 and "flaky" in request.prompt:
            return Reply(status=429, retry_after=1)
        return "plain text reply"

    with StandinTeacher(script, slots=8, latency=0.0, max_requests=500, max_seconds=60) as server:
        teacher = open_teacher(server.url, "standin", ...)   # server.url == "http://127.0.0.1:PORT/v1"
        ...
    server.total                  # requests received (chat + completions; GET /v1/models is not counted)
    server.counts                 # Counter: content hash (Request.hash) -> times received
    server.by_prompt              # Counter: Request.prompt -> times received
    server.requests               # every Request, in arrival order
    server.peak                   # most requests served at once (never more than `slots`)

Endpoints: POST /v1/chat/completions and /v1/completions (with `"stream": true`: server-sent events, one
word per event, a usage event, `data: [DONE]`), GET /v1/models (lists `model`, default "standin").

`Request` fields: `body` (the JSON body), `messages` (chat) , `prompt` (the last user message's text, or a
completion's prompt), `hash` (sha256 of the body as canonical JSON: the same request sent twice has the same
hash), `seen` (times this hash was received, this one included: 1 on the first), `index` (0-based arrival
order), `headers` (lower-case names).

`Reply(content="", status=200, retry_after=None, delay=0.0, reasoning=None, finish_reason="stop", usage=None,
drop=False, raw=None, headers=None)`: `status` >= 400 sends an OpenAI-style error body (and a `Retry-After`
header when `retry_after` is set); `delay` is slept on top of the server's `latency`; `reasoning` goes into
`message.reasoning_content`; `usage` is a (prompt_tokens, completion_tokens) pair, by default the words of
the messages and of the content; `drop` closes the connection without replying; `raw` is sent as the body
as it is (status 200, not JSON). Helpers: `json_reply(obj, fence=False, think=None, prose=False)` and
`truncated(obj, keep=0.6)` (the JSON text cut after that share, finish_reason "length").

Limits: `slots` requests are served at once (more wait for a slot, as on a real server); each takes
`latency` seconds plus its reply's delay. The server stops by itself after `max_requests` requests or
`max_seconds` seconds (whichever first): later requests, even on open connections, are dropped unanswered.
A script that raises answers 500 with the exception's text (and the test sees it in `server.errors`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable


@dataclasses.dataclass
class Request:
    body: dict
    messages: list
    prompt: str
    hash: str
    seen: int
    index: int
    headers: dict


@dataclasses.dataclass
class Reply:
    content: str = ""
    status: int = 200
    retry_after: float | None = None
    delay: float = 0.0
    reasoning: str | None = None
    finish_reason: str = "stop"
    usage: tuple[int, int] | None = None
    drop: bool = False
    raw: bytes | None = None
    headers: dict | None = None


def json_reply(obj: Any, fence: bool = False, think: str | None = None, prose: bool = False) -> Reply:
    """`obj` as JSON text, optionally in a ```json fence, after a <think> block, between sentences of prose."""
    text = json.dumps(obj, ensure_ascii=False)
    if fence:
        text = f"```json\n{text}\n```"
    if prose:
        text = f"Here is the JSON you asked for:\n{text}\nI hope this helps."
    if think is not None:
        text = f"<think>{think}</think>\n{text}"
    return Reply(text)


def truncated(obj: Any, keep: float = 0.6) -> Reply:
    """`obj` as JSON text cut after `keep` of its characters, as a reply that hit max_tokens."""
    text = json.dumps(obj, ensure_ascii=False)
    return Reply(text[: int(len(text) * keep)], finish_reason="length")


def echo(request: Request) -> Reply:
    """The default script: the prompt back, prefixed."""
    return Reply(f"echo: {request.prompt}")


def content_hash(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def _words(value: Any) -> int:
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, list):
        return sum(_words(m.get("content", "") if isinstance(m, dict) else m) for m in value)
    return 0


class StandinTeacher:
    def __init__(self, script: Callable[[Request], Any] = echo, *, slots: int = 8, latency: float = 0.0,
                 max_requests: int = 1000, max_seconds: float = 60.0, model: str = "standin"):
        self.script = script
        self.latency = latency
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self.model = model
        self.slots = threading.BoundedSemaphore(slots)
        self.lock = threading.Lock()
        self.counts: Counter = Counter()
        self.by_prompt: Counter = Counter()
        self.requests: list[Request] = []
        self.errors: list[str] = []
        self.active = 0  # requests holding a slot now
        self.peak = 0    # most requests that held a slot at once
        self.stopped = threading.Event()
        self.httpd = _Server(("127.0.0.1", 0), _handler(self))
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._threads: list[threading.Thread] = []

    @property
    def total(self) -> int:
        return len(self.requests)

    def start(self) -> "StandinTeacher":
        serve = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        watchdog = threading.Timer(self.max_seconds, self.stop)
        watchdog.daemon = True
        self._threads = [serve, watchdog]
        serve.start()
        watchdog.start()
        return self

    def stop(self) -> None:
        """Stop answering (idempotent; safe from a handler thread)."""
        if self.stopped.is_set():
            return
        self.stopped.set()
        threading.Thread(target=self.httpd.shutdown, daemon=True).start()

    def close(self) -> None:
        self.stop()
        self._threads[1].cancel()
        self._threads[0].join(timeout=10)
        self.httpd.server_close()

    def __enter__(self) -> "StandinTeacher":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- one request

    def take(self, body: dict, headers: dict) -> Request | None:
        """Count the request; None once the server has stopped."""
        with self.lock:
            if self.stopped.is_set():
                return None
            messages = body.get("messages") or []
            users = [m.get("content", "") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
            prompt = users[-1] if users else str(body.get("prompt", ""))
            key = content_hash(body)
            self.counts[key] += 1
            self.by_prompt[prompt] += 1
            request = Request(body, messages, prompt, key, self.counts[key], len(self.requests), headers)
            self.requests.append(request)
            if len(self.requests) >= self.max_requests:
                self.stop()
            return request

    def reply_for(self, request: Request) -> Reply:
        try:
            out = self.script(request)
        except Exception as exc:  # the script's bug becomes a 500 the test can see, not a hung client
            self.errors.append(f"{type(exc).__name__}: {exc}")
            return Reply(status=500, content=f"script error: {exc}")
        if isinstance(out, Reply):
            return out
        if isinstance(out, str):
            return Reply(out)
        return Reply(json.dumps(out, ensure_ascii=False))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # a client that opens hundreds of connections at once is not refused

    def handle_error(self, request, client_address):
        import sys

        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):  # a client that gave up
            super().handle_error(request, client_address)


def _handler(server: StandinTeacher):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real servers do
        timeout = 30  # an idle kept-alive connection is closed after this

        def log_message(self, *args):
            pass

        def _send(self, status: int, payload: bytes, content_type: str = "application/json",
                  headers: dict | None = None):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self):
            if server.stopped.is_set():
                self.close_connection = True
                return
            if self.path.rstrip("/").endswith("/models"):
                data = {"object": "list", "data": [{"id": server.model, "object": "model"}]}
                self._send(200, json.dumps(data).encode())
            else:
                self._send(404, b'{"error": {"message": "not found"}}')

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            chat = self.path.rstrip("/").endswith("/chat/completions")
            if not chat and not self.path.rstrip("/").endswith("/completions"):
                self._send(404, b'{"error": {"message": "not found"}}')
                return
            try:
                body = json.loads(raw)
            except ValueError:
                self._send(400, b'{"error": {"message": "body is not JSON"}}')
                return
            request = server.take(body, {k.lower(): v for k, v in self.headers.items()})
            if request is None:
                self.close_connection = True  # stopped: no reply at all
                return
            with server.slots:
                with server.lock:
                    server.active += 1
                    server.peak = max(server.peak, server.active)
                try:
                    reply = server.reply_for(request)
                    time.sleep(server.latency + reply.delay)
                    self._answer(request, reply, chat)
                finally:
                    with server.lock:
                        server.active -= 1

        def _answer(self, request: Request, reply: Reply, chat: bool):
            if reply.drop:
                self.close_connection = True
                return
            if reply.status >= 400:
                headers = dict(reply.headers or {})
                if reply.retry_after is not None:
                    headers["Retry-After"] = f"{reply.retry_after:g}"
                message = reply.content or f"scripted HTTP {reply.status}"
                self._send(reply.status, json.dumps({"error": {"message": message}}).encode(), headers=headers)
                return
            if reply.raw is not None:
                self._send(200, reply.raw, "text/plain", reply.headers)
                return
            prompt_tokens, completion_tokens = reply.usage or (
                _words(request.messages or request.body.get("prompt", "")), _words(reply.content))
            usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                     "total_tokens": prompt_tokens + completion_tokens}
            if request.body.get("stream"):
                self._stream(reply, usage, chat)
                return
            if chat:
                message = {"role": "assistant", "content": reply.content}
                if reply.reasoning is not None:
                    message["reasoning_content"] = reply.reasoning
                choice = {"index": 0, "message": message, "finish_reason": reply.finish_reason}
            else:
                choice = {"index": 0, "text": reply.content, "finish_reason": reply.finish_reason}
            data = {"id": f"standin-{request.index}", "object": "chat.completion" if chat else "text_completion",
                    "created": int(time.time()), "model": server.model, "choices": [choice], "usage": usage}
            self._send(200, json.dumps(data, ensure_ascii=False).encode("utf-8"), headers=reply.headers)

        def _stream(self, reply: Reply, usage: dict, chat: bool):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            pieces = [w + " " for w in reply.content.split(" ")]
            if pieces:
                pieces[-1] = pieces[-1][:-1]
            events = []
            for n, piece in enumerate(pieces):
                last = n == len(pieces) - 1
                choice = ({"index": 0, "delta": {"content": piece}} if chat else {"index": 0, "text": piece})
                choice["finish_reason"] = reply.finish_reason if last else None
                events.append({"choices": [choice]})
            events.append({"choices": [], "usage": usage})
            for event in events:
                self.wfile.write(f"data: {json.dumps(event, ensure_ascii=False)}\n\n".encode("utf-8"))
                self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()

    return Handler
