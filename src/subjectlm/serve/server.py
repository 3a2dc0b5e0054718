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
import os
import time
from typing import Any, Literal

from subjectlm.config import ConfigError, check_options, option
from subjectlm.serve.model_fields import AnsweringModel
from subjectlm.serve.respond import json_error


@dataclasses.dataclass
class ServeConfig(AnsweringModel):
    host: str = option("127.0.0.1", help="address to bind; anything but localhost exposes the model to the network")
    port: int = option(8000, help="TCP port")
    api_key: str | None = option(None, help="require `Authorization: Bearer KEY` (or set SUBJECTLM_API_KEY)")
    max_tokens_limit: int = option(4096, help="largest max_tokens a request may ask for", min=1)
    max_body_bytes: int = option(1 << 20, help="largest request body accepted (bytes)", min=1)
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


class _BodyLimit:
    """ASGI middleware: refuse bodies over `limit` bytes (by Content-Length, or while reading)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await json_error(413, f"request body over {self.limit} bytes")(scope, receive, send)
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


async def _invalid_request(request, exc):
    """A request the schema refuses: 400 naming the first bad field (or the JSON error)."""
    first = exc.errors()[0] if exc.errors() else {}
    if first.get("type") == "json_invalid":
        return json_error(400, f"request body is not valid JSON: {first.get('ctx', {}).get('error', '')}".rstrip(": "))
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    return json_error(400, f"{where}: {first.get('msg', 'invalid value')}" if where else first.get("msg", "invalid request"))


async def _http_error(request, exc):
    kind = "authentication_error" if exc.status_code == 401 else "invalid_request_error"
    return json_error(exc.status_code, str(exc.detail), kind)


def _authorizer(api_key: str | None):
    """The dependency every /v1 route has: with a key, `Authorization: Bearer KEY` or 401."""
    from fastapi import HTTPException, Request

    def authorize(request: Request) -> None:
        if api_key is None:
            return
        header = request.headers.get("authorization", "")
        given = header[7:] if header.lower().startswith("bearer ") else ""
        if not hmac.compare_digest(given.encode(), api_key.encode()):
            raise HTTPException(401, "missing or wrong API key (send `Authorization: Bearer KEY`)")

    return authorize


def create_app(backend, api_key: str | None = None, max_tokens_limit: int = 4096, max_body_bytes: int = 1 << 20,
               max_queue: int = 8, request_timeout: float = 300.0):
    """The ASGI app; `app.state.slots` is its admission (serve() closes it on SIGTERM)."""
    from fastapi import Depends, FastAPI, HTTPException, Request
    from fastapi.exceptions import RequestValidationError

    from subjectlm.serve.admission import Slots
    from subjectlm.serve.respond import Responder
    from subjectlm.serve.responses import Reply, model_list

    ChatRequest, CompletionRequest = _schemas(max_tokens_limit)
    app = FastAPI(title="subjectlm", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(_BodyLimit, limit=max_body_bytes)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(HTTPException, _http_error)
    # As many run at once as the backend decodes together (hf with parallel > 1), the rest queue.
    slots = app.state.slots = Slots(max_queue, request_timeout, running=getattr(backend, "parallel", 1))
    responder = Responder(backend, slots)
    created = int(time.time())
    v1 = [Depends(_authorizer(api_key))]

    # Any `model` name a client sends is served by the one loaded model, as llama.cpp's server does.
    @app.get("/health")
    async def health():
        return {"status": "ok", "running": len(slots.tickets), "limit": slots.limit}

    @app.get("/v1/models", dependencies=v1)
    async def models():
        return model_list(backend.model_id, created)

    @app.post("/v1/chat/completions", dependencies=v1)
    async def chat_completions(req: ChatRequest, request: Request):
        messages = [m.model_dump() for m in req.messages]
        return await responder.respond(Reply.new(True, backend.model_id), messages, _params(req), req.stream,
                                       request.receive)

    @app.post("/v1/completions", dependencies=v1)
    async def completions(req: CompletionRequest, request: Request):
        return await responder.respond(Reply.new(False, backend.model_id), req.prompt, _params(req), req.stream,
                                       request.receive)

    return app


def serve(config: ServeConfig) -> None:
    """Load the backend, then serve until interrupted; SIGTERM/Ctrl-C cancel what is running and exit."""
    import uvicorn

    from subjectlm.backends import open_backend

    if config.host not in ("127.0.0.1", "localhost", "::1") and not config.api_key:
        print(f"warning: serving on {config.host} without --api_key: anyone who can reach this port can use the model",
              flush=True)
    backend = open_backend(config.model_spec(), parallel=config.parallel)
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
