"""The OpenAI-shaped bodies the server sends, as plain dicts (pure: no web framework, no model).

A `Reply` is one answer's identity (`id`, `created`, `model`) and kind: a chat completion
(`/v1/chat/completions`: `chat.completion`, streamed as `chat.completion.chunk`s whose first one
carries the assistant's role) or a text completion (`/v1/completions`: `text_completion`). It builds
the whole body, or the chunks of a streamed one. Errors: `error_body` for a response of its own
(OpenAI's `{"error": {message, type, param, code}}`), `stream_error` for one sent in-band after a
stream's headers are out.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from typing import Any


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def error_body(status: int, message: str, kind: str = "invalid_request_error") -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": status}}


def stream_error(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind}}


def model_list(model_id: str, created: int) -> dict[str, Any]:
    """/v1/models: the one model served (any name a client sends is answered by it)."""
    return {"object": "list", "data": [{"id": model_id, "object": "model", "created": created,
                                        "owned_by": "subjectlm"}]}


@dataclasses.dataclass(frozen=True)
class Reply:
    chat: bool      # chat completion (messages in, an assistant message out) or text completion
    id: str
    created: int    # Unix seconds
    model: str

    @classmethod
    def new(cls, chat: bool, model: str) -> Reply:
        return cls(chat, f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}", int(time.time()), model)

    def _head(self, streamed: bool) -> dict[str, Any]:
        kind = ("chat.completion.chunk" if streamed else "chat.completion") if self.chat else "text_completion"
        if self.chat:
            return {"id": self.id, "created": self.created, "model": self.model, "object": kind}
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}

    def whole(self, text: str, finish_reason: str | None, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
        """The body of a non-streamed answer."""
        if self.chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason}
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
        return {**self._head(False), "choices": [choice], "usage": usage(prompt_tokens, completion_tokens)}

    def opening(self) -> list[dict[str, Any]]:
        """The chunks sent before any text: a chat stream first says who speaks."""
        if not self.chat:
            return []
        return [{**self._head(True), "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                                  "finish_reason": None}]}]

    def chunk(self, text: str, finish_reason: str | None) -> dict[str, Any]:
        """One streamed piece (the last one carries the finish reason)."""
        if self.chat:
            choice = {"index": 0, "delta": {"content": text} if text else {}, "finish_reason": finish_reason}
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
        return {**self._head(True), "choices": [choice]}
