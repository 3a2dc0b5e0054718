"""One respond path for chat and text completions: take a slot, then stream the answer or collect it.

A request without a free slot gets 503 with Retry-After at once. A streamed answer is server-sent
events (`data: {chunk}` ... `data: [DONE]`): an error after the headers went out (a timeout, the
shutdown, a failing backend) is sent in-band, and the slot goes back however the response ends. A
collected answer that was cut short becomes the error response instead (504, 503; 499 for a client
that left, which nobody reads).
"""

# No `from __future__ import annotations`: FastAPI reads annotations of what it is handed at runtime.

import json
from typing import Any

from subjectlm.serve.admission import Slots, Ticket, pieces
from subjectlm.serve.responses import Reply, error_body, stream_error

# Why a request was cut short, as the client is told: (status, message, error type).
CANCELLED = {"timeout": (504, "the request took longer than the server's request_timeout", "timeout"),
             "shutdown": (503, "the server is shutting down", "server_error")}


def json_error(status: int, message: str, kind: str = "invalid_request_error", headers: dict | None = None):
    from fastapi.responses import JSONResponse

    return JSONResponse(error_body(status, message, kind), status_code=status, headers=headers)


def _event(body: dict[str, Any]) -> str:
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


class Responder:
    """Answers requests with one backend, admitted by `slots`."""

    def __init__(self, backend, slots: Slots):
        self.backend, self.slots = backend, slots

    def busy(self):
        why = "the server is shutting down" if self.slots.closed else (
            f"the server is busy ({self.slots.limit} requests running or queued); retry shortly")
        return json_error(503, why, "server_error", headers={"Retry-After": "1"})

    async def respond(self, reply: Reply, prompt, params, stream: bool, receive):
        """The response to one request: `prompt` (text or chat messages) answered with `params`;
        `receive` is the request's ASGI receive (a disconnect cancels the answer)."""
        ticket = self.slots.enter()
        if ticket is None:
            return self.busy()
        if stream:
            return self._stream(ticket, self._events(ticket, reply, prompt, params, receive))
        try:
            parts = [p async for p in pieces(self.backend, prompt, params, ticket, receive)]
        finally:
            self.slots.leave(ticket)
        if ticket.why in CANCELLED:
            return json_error(*CANCELLED[ticket.why])
        if ticket.why == "disconnected":  # nobody reads this; nginx's code for it
            return json_error(499, "client closed the request")
        last = parts[-1]
        return reply.whole("".join(p.text for p in parts), last.finish_reason, last.prompt_tokens,
                           last.completion_tokens)

    async def _events(self, ticket: Ticket, reply: Reply, prompt, params, receive):
        try:
            for chunk in reply.opening():
                yield _event(chunk)
            async for piece in pieces(self.backend, prompt, params, ticket, receive):
                yield _event(reply.chunk(piece.text, piece.finish_reason))
            if ticket.why in CANCELLED:
                _, message, kind = CANCELLED[ticket.why]
                yield _event(stream_error(message, kind))
        except Exception as exc:  # headers are sent already: report in-band
            yield _event(stream_error(str(exc), "server_error"))
        if ticket.why != "disconnected":
            yield "data: [DONE]\n\n"

    def _stream(self, ticket: Ticket, events):
        """A streamed answer that gives its slot back however the response ends (done, error, disconnect)."""
        from fastapi.responses import StreamingResponse

        slots = self.slots

        class Stream(StreamingResponse):
            async def __call__(self, scope, receive, send):
                try:
                    await super().__call__(scope, receive, send)
                finally:
                    slots.leave(ticket)

        return Stream(events, media_type="text/event-stream")
