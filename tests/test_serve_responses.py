"""The server's OpenAI-shaped bodies, built without a server or a model, compared as exact dicts."""

from __future__ import annotations

import re

from subjectlm.serve.responses import Reply, error_body, model_list, stream_error, usage

CHAT = Reply(chat=True, id="chatcmpl-abc", created=1700000000, model="tiny")
TEXT = Reply(chat=False, id="cmpl-abc", created=1700000000, model="tiny")


def test_usage_adds_up():
    assert usage(7, 4) == {"prompt_tokens": 7, "completion_tokens": 4, "total_tokens": 11}


def test_chat_completion():
    assert CHAT.whole("Paris.", "stop", 12, 3) == {
        "id": "chatcmpl-abc", "created": 1700000000, "model": "tiny", "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris."}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
    }


def test_chat_stream_opens_with_the_role_then_deltas():
    assert CHAT.opening() == [{
        "id": "chatcmpl-abc", "created": 1700000000, "model": "tiny", "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}],
    }]
    assert CHAT.chunk("Par", None) == {
        "id": "chatcmpl-abc", "created": 1700000000, "model": "tiny", "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": "Par"}, "finish_reason": None}],
    }
    # The last piece may carry no text: its delta is empty, and it says why the answer ended.
    assert CHAT.chunk("", "length") == {
        "id": "chatcmpl-abc", "created": 1700000000, "model": "tiny", "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}],
    }


def test_text_completion_and_its_chunks():
    assert TEXT.whole(" blue", "length", 4, 1) == {
        "id": "cmpl-abc", "object": "text_completion", "created": 1700000000, "model": "tiny",
        "choices": [{"index": 0, "text": " blue", "logprobs": None, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 4, "completion_tokens": 1, "total_tokens": 5},
    }
    assert TEXT.opening() == []
    assert TEXT.chunk("", "stop") == {
        "id": "cmpl-abc", "object": "text_completion", "created": 1700000000, "model": "tiny",
        "choices": [{"index": 0, "text": "", "logprobs": None, "finish_reason": "stop"}],
    }


def test_errors_and_the_model_list():
    assert error_body(503, "the server is shutting down", "server_error") == {
        "error": {"message": "the server is shutting down", "type": "server_error", "param": None, "code": 503}}
    assert error_body(400, "prompt: Field required") == {
        "error": {"message": "prompt: Field required", "type": "invalid_request_error", "param": None, "code": 400}}
    assert stream_error("boom", "server_error") == {"error": {"message": "boom", "type": "server_error"}}
    assert model_list("tiny", 1700000000) == {
        "object": "list", "data": [{"id": "tiny", "object": "model", "created": 1700000000, "owned_by": "subjectlm"}]}


def test_new_replies_get_openai_ids():
    chat, text = Reply.new(True, "m"), Reply.new(False, "m")
    assert re.fullmatch(r"chatcmpl-[0-9a-f]{24}", chat.id) and re.fullmatch(r"cmpl-[0-9a-f]{24}", text.id)
    assert chat.id != Reply.new(True, "m").id
    assert chat.chat and not text.chat and chat.model == "m" and chat.created > 1700000000
