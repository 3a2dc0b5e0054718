"""The openai backend against the stand-in server (tests/standin_teacher.py): order, usage, concurrency, retries
with Retry-After, failures by reason, JSON mode and its fallback, reasoning stripped, streaming."""

import time

import pytest

pytest.importorskip("httpx")

from standin_teacher import Reply, StandinTeacher  # noqa: E402
from subjectlm.backends import BackendUnavailable, GenParams, ModelSpec, open_backend  # noqa: E402
from subjectlm.backends.openai import (  # noqa: E402
    EndpointError,
    OpenAIBackend,
    ThinkFilter,
    base_url,
    retry_after_seconds,
    strip_reasoning,
)

FAST = {"backoff": 0.01, "max_backoff": 0.05, "retry_seed": 0}  # retries without waiting in tests


def chat(text):
    return [{"role": "user", "content": text}]


@pytest.mark.parametrize("url, expected", [
    ("http://h:1", "http://h:1/v1"),
    ("http://h:1/", "http://h:1/v1"),
    ("http://h:1/v1/", "http://h:1/v1"),
    ("http://h:1/v1/chat/completions", "http://h:1/v1"),
    ("http://h:1/v1/completions", "http://h:1/v1"),
    ("https://api.example.com/x/v1", "https://api.example.com/x/v1"),
])
def test_base_url(url, expected):
    assert base_url(url) == expected


@pytest.mark.parametrize("text, expected", [
    ("<think>a\nb</think>\nanswer", "answer"),
    ("before <think>x</think> after", "before  after"),
    ("reasoning without an opening tag</think>answer", "answer"),
    ("<think>cut off while thinking", ""),
    ("<think>1</think>A<think>2</think>B", "AB"),
    ("plain", "plain"),
])
def test_strip_reasoning(text, expected):
    assert strip_reasoning(text) == expected


def test_think_filter_across_pieces():
    pieces = ["Hel", "lo <th", "ink>secret", " stuff</thi", "nk> world", " <", "b>"]
    f = ThinkFilter()
    assert "".join(f.feed(p) for p in pieces) + f.flush() == "Hello  world <b>"
    f = ThinkFilter()
    assert f.feed("<think>never closed") + f.flush() == ""


def test_retry_after_seconds():
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds("0.5") == 0.5
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert retry_after_seconds("100000") == 300.0  # capped
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def test_generate_order_usage_auth_and_concurrency(monkeypatch):
    monkeypatch.setenv("STANDIN_KEY", "sk-abc")
    with StandinTeacher(slots=16, latency=0.1, max_requests=50) as server:
        backend = open_backend(ModelSpec(server.url), api_key_env="STANDIN_KEY", concurrency=3)
        assert isinstance(backend, OpenAIBackend) and backend.model_id == "standin"  # from /v1/models
        prompts = [chat(f"q{i} one two") for i in range(12)]
        start = time.monotonic()
        answers = backend.generate(prompts, GenParams(max_tokens=9, temperature=0.3, seed=5))
        elapsed = time.monotonic() - start
        completion = backend.generate(["raw prompt"], GenParams())[0]
        backend.close()
    assert [a.text for a in answers] == [f"echo: q{i} one two" for i in range(12)]
    assert {(a.prompt_tokens, a.completion_tokens, a.finish_reason) for a in answers} == {(3, 4, "stop")}
    assert completion.text == "echo: raw prompt"
    assert server.peak == 3 and elapsed >= 0.4  # 12 requests, 3 at a time, 0.1 s each
    first = server.requests[0]
    assert first.headers["authorization"] == "Bearer sk-abc"
    assert first.body == {"model": "standin", "max_tokens": 9, "temperature": 0.3, "seed": 5,
                          "messages": chat("q0 one two")}
    assert server.requests[-1].body["prompt"] == "raw prompt"


def test_no_key_no_header(monkeypatch):
    monkeypatch.delenv("STANDIN_MISSING", raising=False)
    with StandinTeacher(max_requests=5) as server:
        backend = OpenAIBackend(server.url, "m", api_key_env="STANDIN_MISSING")
        backend.generate([chat("x")], GenParams())
    assert "authorization" not in server.requests[0].headers


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured(status):
    def script(request):
        return Reply(status=status, retry_after=1) if request.seen == 1 else "fine"

    with StandinTeacher(script, max_requests=10) as server:
        backend = OpenAIBackend(server.url, "m", **FAST)
        start = time.monotonic()
        answer = backend.complete(chat("x"), GenParams())
        elapsed = time.monotonic() - start
    assert answer.text == "fine" and server.total == 2
    assert 1.0 <= elapsed < 3.0  # the header's second, not the 0.01 s backoff
    assert backend.retried == {f"http_{status}": 1}


@pytest.mark.parametrize("reply, options, reason, sent", [
    (Reply(status=500), {"max_retries": 2}, "http_500", 3),
    (Reply(status=502), {"max_retries": 1}, "http_502", 2),
    (Reply(drop=True), {"max_retries": 1}, "connection", 2),
    (Reply(delay=1.0), {"max_retries": 0, "timeout": 0.2}, "timeout", 1),
    (Reply(raw=b"<html>not json</html>"), {}, "bad_response", 1),
    (Reply(status=400), {}, "http_400", 1),   # the request's fault: asking again would not help
    (Reply(status=401), {}, "http_401", 1),   # a wrong key: fatal
])
def test_failures_by_reason(reply, options, reason, sent):
    with StandinTeacher(lambda request: reply, max_requests=10) as server:
        backend = OpenAIBackend(server.url, "m", **{**FAST, **options})
        with pytest.raises(EndpointError) as caught:
            backend.complete(chat("x"), GenParams())
    assert caught.value.reason == reason and server.total == sent
    assert caught.value.fatal == (reason == "http_401")


def test_transient_errors_then_success():
    def script(request):
        return Reply(status=500) if request.seen <= 2 else "ok now"

    with StandinTeacher(script, max_requests=10) as server:
        backend = OpenAIBackend(server.url, "m", max_retries=3, **FAST)
        assert backend.complete(chat("x"), GenParams()).text == "ok now"
    assert server.total == 3 and backend.retried == {"http_500": 2}


def test_jittered_backoff_is_seeded_and_bounded():
    a = OpenAIBackend("http://127.0.0.1:9/v1", "m", backoff=1.0, max_backoff=8.0, retry_seed=7)
    b = OpenAIBackend("http://127.0.0.1:9/v1", "m", backoff=1.0, max_backoff=8.0, retry_seed=7)
    delays = [a._delay(n, None) for n in range(6)]
    assert delays == [b._delay(n, None) for n in range(6)]
    assert all(0 <= d <= min(8.0, 2 ** n) for n, d in enumerate(delays))
    assert a._delay(0, 2.5) == 2.5  # Retry-After wins over the backoff


def test_json_mode_and_fallback():
    def strict(request):
        return '{"a": 1}'

    def no_json_mode(request):
        if "response_format" in request.body:
            return Reply(status=400, content="response_format is not supported")
        return '{"a": 1}'

    with StandinTeacher(strict, max_requests=10) as server:
        backend = OpenAIBackend(server.url, "m", **FAST)
        backend.complete(chat("x"), GenParams(), json_mode=True)
    assert server.requests[0].body["response_format"] == {"type": "json_object"}
    with StandinTeacher(no_json_mode, max_requests=10) as server:
        backend = OpenAIBackend(server.url, "m", **FAST)
        assert backend.complete(chat("x"), GenParams(), json_mode=True).text == '{"a": 1}'
        assert backend.json_mode_ok is False
        backend.complete(chat("y"), GenParams(), json_mode=True)
    assert ["response_format" in r.body for r in server.requests] == [True, False, False]


def test_reasoning_dropped():
    with StandinTeacher(lambda r: Reply("<think>hmm</think>\nThe answer.", reasoning="long thoughts"),
                        max_requests=5) as server:
        answer = OpenAIBackend(server.url, "m").complete(chat("x"), GenParams())
    assert answer.text == "The answer."


def test_stream():
    with StandinTeacher(lambda r: Reply("one <think>two three</think> four", usage=(7, 4)),
                        max_requests=5) as server:
        backend = OpenAIBackend(server.url, "m")
        pieces = list(backend.stream(chat("x"), GenParams()))
    assert "".join(p.text for p in pieces) == "one  four"
    last = pieces[-1]
    assert (last.finish_reason, last.prompt_tokens, last.completion_tokens) == ("stop", 7, 4)
    assert server.requests[0].body["stream"] is True


def test_scoring_is_unavailable_and_bad_urls():
    backend = open_backend(ModelSpec("http://127.0.0.1:9/v1", "openai"), served_model="m")
    with pytest.raises(BackendUnavailable, match="local model"):
        backend.score_next(["a"], ["b"])
    with pytest.raises(BackendUnavailable, match="local model"):
        backend.chat_prompt(chat("x"))
    from subjectlm.errors import UserError

    with pytest.raises(UserError, match="not an http"):
        open_backend(ModelSpec("models/x", "openai"))
