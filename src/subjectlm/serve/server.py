"""`subjectlm serve`: an OpenAI-compatible HTTP server over one backend (FastAPI + uvicorn).

Endpoints: GET /v1/models, POST /v1/chat/completions and /v1/completions (both with
`stream`: server-sent events ending in `data: [DONE]`), GET /health. Safe by default:
binds 127.0.0.1; with an API key every /v1 request needs `Authorization: Bearer KEY`
(401 otherwise); bodies are capped (413), malformed or out-of-range requests get a 400
with an OpenAI-style `{"error": {"message": ...}}`, and the server keeps serving.

It survives its clients (admission.py): one request generates (hf: `parallel` requests decoded
together) while `max_queue` wait, more get an immediate 503 with `Retry-After`; a client that disconnects, a request past
`request_timeout` (504, or an in-band error when streaming) and SIGTERM all cancel the
generation at its next token, so the model is free again at once and the process exits in
seconds.
"""

# No `from __future__ import annotations`: FastAPI reads the (locally imported) annotations at runtime.

import dataclasses
import hmac
import json
import os
import time
import uuid
from typing import Any, Literal

from subjectlm.backends import BACKENDS
from subjectlm.config import ConfigError, check_options, option
from subjectlm.models import DTYPE_CHOICES
from subjectlm.serve.chat import DEVICE_HELP, DTYPE_HELP


@dataclasses.dataclass
class ServeConfig:
    model: str = option("default", help="model directory, `default`, or a .gguf file", aliases=("--model_name_or_path",))
    backend: str = option("auto", help="auto: llamacpp for a .gguf, else hf", choices=BACKENDS)
    host: str = option("127.0.0.1", help="address to bind; anything but localhost exposes the model to the network")
    port: int = option(8000, help="TCP port")
    api_key: str | None = option(None, help="require `Authorization: Bearer KEY` (or set SUBJECTLM_API_KEY)")
    n_ctx: int = option(4096, help="llama.cpp context length (tokens)", min=1)
    dtype: str | None = option(None, help=DTYPE_HELP, choices=DTYPE_CHOICES)
    device: str | None = option(None, help=DEVICE_HELP)
    max_tokens_limit: int = option(4096, help="largest max_tokens a request may ask for", min=1)
    max_body_bytes: int = option(1 << 20, help="largest request body accepted (bytes)", min=1)
    trust_remote_code: bool = option(False, help="allow custom model code from the model directory")
    parallel: int = option(8, help="hf backend: requests decoded together in one batch (1 = one at a time)", min=1)
    max_queue: int = option(8, help="requests that may wait while others are answered; more get 503 + Retry-After",
                            min=0)
    request_timeout: float = option(300.0, help="seconds a request may take, waiting included (then 504)")

    def __post_init__(self):
        check_options(self)
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port: {self.port} is not a TCP port")
        if self.request_timeout <= 0:
            raise ConfigError(f"request_timeout: must be positive, got {self.request_timeout}")
        if self.api_key is None:
            self.api_key = os.environ.get("SUBJECTLM_API_KEY") or None


def _schemas(max_tokens_limit: int):
    """Request models; built per app so the max_tokens bound is the server's own."""
    from pydantic import BaseModel, ConfigDict, Field

    class Message(BaseModel):
        role: Literal["system", "user", "assistant"]
        content: str = Field(max_length=1_000_000)

    class Common(BaseModel):
        model_config = ConfigDict(extra="ignore")  # clients send fields we do not use (user, stream_options)
        model: str | None = None
        max_tokens: int | None = Field(None, ge=1, le=max_tokens_limit)
        max_completion_tokens: int | None = Field(None, ge=1, le=max_tokens_limit)
        temperature: float = Field(0.0, ge=0.0, le=2.0)
        top_p: float = Field(1.0, gt=0.0, le=1.0)
        stop: str | list[str] | None = None
        seed: int | None = None
        n: int = Field(1, ge=1, le=1)
        stream: bool = False

    class ChatRequest(Common):
        messages: list[Message] = Field(min_length=1)

    class CompletionRequest(Common):
        prompt: str

    return ChatRequest, CompletionRequest


def _params(req) -> Any:
    from subjectlm.backends import GenParams

    stop = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
    return GenParams(max_tokens=req.max_completion_tokens or req.max_tokens or 256, temperature=req.temperature,
                     top_p=req.top_p, stop=stop, seed=req.seed)


def _error(status: int, message: str, kind: str = "invalid_request_error", headers: dict | None = None):
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": status}},
                        status_code=status, headers=headers)


# Why a request was cut short, as the client is told: (status, message, error type).
CANCELLED = {"timeout": (504, "the request took longer than the server's request_timeout", "timeout"),
             "shutdown": (503, "the server is shutting down", "server_error")}


class _BodyLimit:
    """ASGI middleware: refuse bodies over `limit` bytes (by Content-Length, or while reading)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await _error(413, f"request body over {self.limit} bytes")(scope, receive, send)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                from fastapi import HTTPException

                raise HTTPException(413, f"request body over {self.limit} bytes")
            return message

        return await self.app(scope, limited, send)


def create_app(backend, api_key: str | None = None, max_tokens_limit: int = 4096, max_body_bytes: int = 1 << 20,
               max_queue: int = 8, request_timeout: float = 300.0):
    """The ASGI app; `app.state.slots` is its admission (serve() closes it on SIGTERM)."""
    from fastapi import Depends, FastAPI, HTTPException, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import StreamingResponse

    from subjectlm.serve.admission import Slots, pieces

    ChatRequest, CompletionRequest = _schemas(max_tokens_limit)
    app = FastAPI(title="subjectlm", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(_BodyLimit, limit=max_body_bytes)
    # As many run at once as the backend decodes together (hf with parallel > 1), the rest queue.
    slots = app.state.slots = Slots(max_queue, request_timeout, running=getattr(backend, "parallel", 1))
    created = int(time.time())

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        if first.get("type") == "json_invalid":
            return _error(400, f"request body is not valid JSON: {first.get('ctx', {}).get('error', '')}".rstrip(": "))
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return _error(400, f"{where}: {first.get('msg', 'invalid value')}" if where else first.get("msg", "invalid request"))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException):
        kind = "authentication_error" if exc.status_code == 401 else "invalid_request_error"
        return _error(exc.status_code, str(exc.detail), kind)

    def authorize(request: Request) -> None:
        if api_key is None:
            return
        header = request.headers.get("authorization", "")
        given = header[7:] if header.lower().startswith("bearer ") else ""
        if not hmac.compare_digest(given.encode(), api_key.encode()):
            raise HTTPException(401, "missing or wrong API key (send `Authorization: Bearer KEY`)")

    # Any `model` name a client sends is served by the one loaded model, as llama.cpp's server does.
    @app.get("/health")
    async def health():
        return {"status": "ok", "running": len(slots.tickets), "limit": slots.limit}

    @app.get("/v1/models", dependencies=[Depends(authorize)])
    async def models():
        return {"object": "list", "data": [{"id": backend.model_id, "object": "model", "created": created,
                                            "owned_by": "subjectlm"}]}

    def busy():
        why = "the server is shutting down" if slots.closed else (
            f"the server is busy ({slots.limit} requests running or queued); retry shortly")
        return _error(503, why, "server_error", headers={"Retry-After": "1"})

    class _Stream(StreamingResponse):
        """A streamed answer that gives its slot back however the response ends (done, error, disconnect)."""

        def __init__(self, content, ticket):
            super().__init__(content, media_type="text/event-stream")
            self.ticket = ticket

        async def __call__(self, scope, receive, send):
            try:
                await super().__call__(scope, receive, send)
            finally:
                slots.leave(self.ticket)

    def sse(ticket, chunks) -> StreamingResponse:
        async def body():
            try:
                async for chunk in chunks:
                    yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
                if ticket.why in CANCELLED:
                    _, message, kind = CANCELLED[ticket.why]
                    yield f"data: {json.dumps({'error': {'message': message, 'type': kind}})}\n\n"
            except Exception as exc:  # headers are sent already: report in-band
                yield f"data: {json.dumps({'error': {'message': str(exc), 'type': 'server_error'}})}\n\n"
            if ticket.why != "disconnected":
                yield "data: [DONE]\n\n"
        return _Stream(body(), ticket)

    async def whole(ticket, prompt, params, request: Request):
        """Every piece of a non-streamed answer, or the error response that replaces it."""
        try:
            parts = [p async for p in pieces(backend, prompt, params, ticket, request.receive)]
        finally:
            slots.leave(ticket)
        if ticket.why in CANCELLED:
            status, message, kind = CANCELLED[ticket.why]
            return None, _error(status, message, kind)
        if ticket.why == "disconnected":  # nobody reads this; nginx's code for it
            return None, _error(499, "client closed the request")
        return parts, None

    def usage(last) -> dict:
        return {"prompt_tokens": last.prompt_tokens, "completion_tokens": last.completion_tokens,
                "total_tokens": last.prompt_tokens + last.completion_tokens}

    @app.post("/v1/chat/completions", dependencies=[Depends(authorize)])
    async def chat_completions(req: ChatRequest, request: Request):
        ticket = slots.enter()
        if ticket is None:
            return busy()
        prompt, params = [m.model_dump() for m in req.messages], _params(req)
        rid, now = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        head = {"id": rid, "created": now, "model": backend.model_id}
        if req.stream:
            async def chunks():
                yield {**head, "object": "chat.completion.chunk",
                       "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
                async for p in pieces(backend, prompt, params, ticket, request.receive):
                    delta = {"content": p.text} if p.text else {}
                    yield {**head, "object": "chat.completion.chunk",
                           "choices": [{"index": 0, "delta": delta, "finish_reason": p.finish_reason}]}
            return sse(ticket, chunks())
        parts, failed = await whole(ticket, prompt, params, request)
        if failed is not None:
            return failed
        return {**head, "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(p.text for p in parts)},
                             "finish_reason": parts[-1].finish_reason}],
                "usage": usage(parts[-1])}

    @app.post("/v1/completions", dependencies=[Depends(authorize)])
    async def completions(req: CompletionRequest, request: Request):
        ticket = slots.enter()
        if ticket is None:
            return busy()
        params = _params(req)
        rid, now = f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        head = {"id": rid, "object": "text_completion", "created": now, "model": backend.model_id}
        if req.stream:
            async def chunks():
                async for p in pieces(backend, req.prompt, params, ticket, request.receive):
                    yield {**head, "choices": [{"index": 0, "text": p.text, "logprobs": None,
                                                "finish_reason": p.finish_reason}]}
            return sse(ticket, chunks())
        parts, failed = await whole(ticket, req.prompt, params, request)
        if failed is not None:
            return failed
        return {**head, "choices": [{"index": 0, "text": "".join(p.text for p in parts), "logprobs": None,
                                     "finish_reason": parts[-1].finish_reason}],
                "usage": usage(parts[-1])}

    return app


def serve(config: ServeConfig) -> None:
    """Load the backend, then serve until interrupted; SIGTERM/Ctrl-C cancel what is running and exit."""
    import uvicorn

    from subjectlm.serve.chat import open_model

    if config.host not in ("127.0.0.1", "localhost", "::1") and not config.api_key:
        print(f"warning: serving on {config.host} without --api_key: anyone who can reach this port can use the model",
              flush=True)
    backend = open_model(config)
    app = create_app(backend, config.api_key, config.max_tokens_limit, config.max_body_bytes, config.max_queue,
                     config.request_timeout)

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame):  # the signal handler: cancel generations first, then uvicorn's shutdown
            app.state.slots.close()
            super().handle_exit(sig, frame)

    print(f"serving {backend.model_id} ({backend.name}) on http://{config.host}:{config.port}/v1 "
          f"({getattr(backend, 'parallel', 1)} at once, queue {config.max_queue}, timeout {config.request_timeout:g} s)",
          flush=True)
    # The grace period only covers responses that are still sending their last bytes: generations are cancelled.
    Server(uvicorn.Config(app, host=config.host, port=config.port, log_level="warning",
                          timeout_graceful_shutdown=3)).run()
    app.state.slots.join(timeout=5)  # cancelled threads end at their next token; then the model can go
    backend.close()
