"""The Teacher against the stand-in server: tolerant JSON, every failure counted by reason, the cache (a run
killed with SIGKILL resumes without asking anything twice), the API key in no file, a local teacher."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("httpx")

from standin_teacher import Reply, StandinTeacher, json_reply, truncated  # noqa: E402
from subjectlm.errors import UserError  # noqa: E402
from subjectlm.synth.jsonparse import ReplyNotJSON, parse_json_reply  # noqa: E402
from subjectlm.synth.teacher import (  # noqa: E402
    TeacherRequest,
    open_teacher,
    request_key,
    request_seed,
)

KEY = "sk-standin-7f3a9c-secret"


def chat(text):
    return [{"role": "user", "content": text}]


# ---- tolerant JSON

@pytest.mark.parametrize("text, expected", [
    ('{"a": 1}', {"a": 1}),
    ('```json\n{"a": [1, 2,],}\n```', {"a": [1, 2]}),
    ('```\n[1, 2]\n```\nThat is all.', [1, 2]),
    ('Sure! Here it is: {"a": "x}"} hope it helps', {"a": "x}"}),
    ('<think>maybe {no}</think>\n[1, 2]', [1, 2]),
    ('use {braces} then {"k": "v"}', {"k": "v"}),
    ('{"a": "he said \\"x\\"",}', {"a": 'he said "x"'}),
    ('{"facts": [{"q": 1}, {"q": 2', {"facts": [{"q": 1}]}),     # cut: the incomplete element goes
    ('{"facts": ["a", "b', {"facts": ["a"]}),                     # never a partial string
    ('["a", "b"', ["a", "b"]),                                    # a whole last string stays
    ('{"a": "x", "b"', {"a": "x"}),
    ('{"n": 12', None),                                           # 12 may be 123: nothing left
    ('{"facts": [', None),                                        # only empty containers: not repaired
    ('no json here', None),
    ('', None),
    ('<think>only thinking</think>', None),
])
def test_parse_json_reply(text, expected):
    if expected is None:
        with pytest.raises(ReplyNotJSON):
            parse_json_reply(text)
    else:
        assert parse_json_reply(text) == expected


def test_request_key():
    r = TeacherRequest(chat("x"), want_json=True, max_tokens=10, temperature=0.5, tag="a")
    same = TeacherRequest(chat("x"), want_json=True, max_tokens=10, temperature=0.5, tag="b")  # tag not hashed
    assert request_key("m", r, 0) == request_key("m", same, 0)
    others = [request_key("m2", r, 0), request_key("m", r, 1),
              request_key("m", TeacherRequest(chat("x"), True, 11, 0.5), 0),
              request_key("m", TeacherRequest(chat("x"), True, 10, 0.6), 0),
              request_key("m", TeacherRequest(chat("x"), False, 10, 0.5), 0),
              request_key("m", TeacherRequest(chat("y"), True, 10, 0.5), 0)]
    assert len(set(others + [request_key("m", r, 0)])) == 7
    assert request_key("m", r, 0) == "0b79f2e8dd5b81cfb81f5952fd761c25392c273360f6cef39a43d4c563540dc2"  # stable across runs and versions: a changed key empties every cache


# ---- every failure kind, counted

def scripted(request):
    """Behaviour by the prompt's first word; `seen` is the count of this exact body (a re-ask has another)."""
    kind = request.prompt.split()[0]
    asks = SCRIPT_ASKS[request.prompt] = SCRIPT_ASKS.get(request.prompt, 0) + 1
    if kind == "good":
        return json_reply({"facts": ["a", "b"]})
    if kind == "fenced":
        return json_reply({"facts": ["a"]}, fence=True)
    if kind == "think":
        return json_reply({"facts": ["t"]}, think="{not this} [nor this]", prose=True)
    if kind == "cut":
        return truncated({"facts": ["first fact", "second fact", "third fact"]}, keep=0.8)
    if kind == "cutbad":
        return Reply('{"facts": [', finish_reason="length")
    if kind == "garbage":
        return "I cannot answer in JSON, sorry."
    if kind == "garbage-once":
        return "not json" if asks == 1 else json_reply({"fixed": True})
    if kind == "empty":
        return Reply("", reasoning="thought for a long time")
    if kind == "flaky":
        return Reply(status=500) if request.seen == 1 else "plain after a 500"
    if kind == "down":
        return Reply(status=503)
    if kind == "limited":
        return Reply(status=429, retry_after=0.2) if request.seen == 1 else "plain after a 429"
    if kind == "slow":
        return Reply("slow but fine", delay=0.3)
    if kind == "hang":
        return Reply("too late", delay=1.5)
    if kind == "plain":
        return Reply("<think>hidden</think>plain text", usage=(1000, 500))
    raise AssertionError(kind)


SCRIPT_ASKS: dict = {}
KINDS_JSON = ["good", "fenced", "think", "cut", "cutbad", "garbage", "garbage-once", "empty"]
KINDS_TEXT = ["flaky", "down", "limited", "slow", "hang", "plain"]


def test_every_failure_kind_is_counted_and_the_run_finishes(tmp_path):
    SCRIPT_ASKS.clear()
    requests = ([TeacherRequest(chat(f"{k} item"), want_json=True) for k in KINDS_JSON]
                + [TeacherRequest(chat(f"{k} item")) for k in KINDS_TEXT])
    with StandinTeacher(scripted, slots=8, max_requests=100) as server:
        teacher = open_teacher(server.url, "standin", None, 4, tmp_path / "cache.jsonl", timeout=0.8,
                               max_retries=1, price_in=2.0, price_out=10.0, progress=False)
        teacher.backend.backoff = 0.01
        replies = teacher.ask(requests)
        teacher.close()
    got = {r.messages[0]["content"].split()[0]: rep for r, rep in zip(requests, replies)}
    assert got["good"].data == {"facts": ["a", "b"]} and got["fenced"].data == {"facts": ["a"]}
    assert got["think"].data == {"facts": ["t"]}
    assert got["cut"].data == {"facts": ["first fact", "second fact"]}
    assert got["garbage-once"].data == {"fixed": True}
    assert got["plain"].text == "plain text" and got["flaky"].text == "plain after a 500"
    assert got["limited"].ok and got["slow"].ok
    reasons = {kind: rep.reason for kind, rep in got.items() if not rep.ok}
    assert reasons == {"cutbad": "truncated_json", "garbage": "invalid_json", "empty": "empty_reply",
                       "down": "http_503", "hang": "timeout"}
    stats = teacher.stats.to_dict()
    assert stats["failures"] == {"empty_reply": 1, "http_503": 1, "invalid_json": 1, "timeout": 1,
                                 "truncated_json": 1}
    assert stats["ok"] == 9 and stats["failed"] == 5 and stats["reasked"] == 4  # cutbad, garbage(-once), empty
    assert stats["requests"] == 14 + 4 and stats["cached"] == 0
    assert stats["http_retries"] == {"http_429": 1, "http_500": 1, "http_503": 1, "timeout": 1}
    # the server saw each re-ask as a request of its own (another seed), and each retry
    assert SCRIPT_ASKS["garbage item"] == 2 and SCRIPT_ASKS["good item"] == 1 and SCRIPT_ASKS["flaky item"] == 2
    assert stats["prompt_tokens"] >= 1000 and stats["cost"] == pytest.approx(
        (stats["prompt_tokens"] * 2.0 + stats["completion_tokens"] * 10.0) / 1e6)
    assert json_requests_sent_json_mode(server)


def json_requests_sent_json_mode(server):
    return all(("response_format" in r.body) == (r.prompt.split()[0] in KINDS_JSON) for r in server.requests)


def test_cache_resumes_and_duplicates_are_asked_once(tmp_path):
    SCRIPT_ASKS.clear()
    requests = [TeacherRequest(chat(f"{k} item"), want_json=True) for k in ("good", "garbage", "fenced")]
    requests.append(TeacherRequest(chat("good item"), want_json=True, tag="the same request again"))
    with StandinTeacher(scripted, max_requests=100) as server:
        with open_teacher(server.url, "standin", None, 2, tmp_path / "c.jsonl", progress=False) as teacher:
            first = teacher.ask(requests)
        assert server.total == 4  # good, garbage twice (re-ask), fenced; the duplicate not at all
        assert first[3] == dataclasses.replace(first[0], cached=True)
        with open_teacher(server.url, "standin", None, 2, tmp_path / "c.jsonl", progress=False) as teacher:
            again = teacher.ask(requests)
        assert server.total == 4  # nothing asked again
    assert [(r.ok, r.text, r.data, r.reason) for r in again] == [(r.ok, r.text, r.data, r.reason) for r in first]
    # cached counts replies read from the cache: good, garbage and its re-ask, fenced
    assert all(r.cached for r in again) and teacher.stats.cached == 4 and teacher.stats.requests == 0
    assert teacher.stats.reasked == 1 and teacher.stats.failures == {"invalid_json": 1}


def test_fatal_errors_stop_the_run(tmp_path):
    with StandinTeacher(lambda r: Reply(status=401, content="bad key"), max_requests=20) as server:
        teacher = open_teacher(server.url, "standin", None, 2, tmp_path / "c.jsonl", progress=False)
        with pytest.raises(UserError, match="401.*bad key"):
            teacher.ask([TeacherRequest(chat(f"q{i}")) for i in range(10)])
    assert server.total <= 4  # the ones in flight, not all ten


# ---- killed with SIGKILL mid-run, resumed

RUN = """
import json, sys
from subjectlm.synth.teacher import TeacherRequest, open_teacher
url, cache, out, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
requests = [TeacherRequest([{"role": "user", "content": f"item {i}"}], want_json=True) for i in range(n)]
teacher = open_teacher(url, "standin", "STANDIN_TEACHER_KEY", 4, cache, progress=False)
replies = teacher.ask(requests)
teacher.close()
rows = [[r.ok, r.text, r.data, r.reason] for r in replies]
json.dump({"replies": rows, "stats": teacher.stats.to_dict()}, open(out, "w"))
"""


def resumable_script(request):
    assert request.headers.get("authorization") == f"Bearer {KEY}"
    i = int(request.prompt.split()[1])
    if i % 10 == 3:
        return "no JSON here"  # asked twice, then invalid_json: on resume too
    if i % 10 == 5:
        return json_reply({"i": i}, fence=True, think="...")
    return json_reply({"i": i, "facts": [f"fact {i}"]})


def run_teacher(url, cache, out, n, env):
    return subprocess.Popen([sys.executable, "-c", RUN, url, str(cache), str(out), str(n)], env=env)


def sent_by_identity(server):
    """How many times each (prompt, seed) was received; the seed tells a first ask from a re-ask."""
    return Counter((r.prompt, r.body["seed"]) for r in server.requests)


def cached_identities(cache: Path):
    out = set()
    for line in cache.read_bytes().split(b"\n"):
        try:
            row = json.loads(line)
        except ValueError:
            continue  # the line a kill cut short
        out.add((row["messages"][-1]["content"], request_seed(row["key"])))
    return out


@pytest.mark.slow
def test_sigkill_mid_run_then_resume(tmp_path):
    n = 80
    env = {**os.environ, "STANDIN_TEACHER_KEY": KEY}
    with StandinTeacher(resumable_script, slots=4, latency=0.05, max_requests=1000, max_seconds=120) as server:
        cache, out = tmp_path / "run" / "teacher_cache.jsonl", tmp_path / "run" / "out.json"
        process = run_teacher(server.url, cache, out, n, env)
        deadline = time.monotonic() + 60
        while server.total < 30 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.01)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        assert not out.exists()
        before_kill = cached_identities(cache)
        assert 20 <= len(before_kill) < n
        assert subprocess.run([sys.executable, "-c", RUN, server.url, str(cache), str(out), str(n)], env=env,
                              timeout=120).returncode == 0
        sent = sent_by_identity(server)
    # no request whose reply was cached was sent again; the ones in flight at the kill may have been
    assert all(sent[identity] == 1 for identity in before_kill)
    assert sum(sent.values()) - len(sent) <= 8
    assert len(sent) == n + n // 10  # every first ask, and a re-ask for each unparsable reply
    resumed = json.loads(out.read_text())

    with StandinTeacher(resumable_script, slots=4, max_requests=1000) as fresh:  # the same run in one go
        assert run_teacher(fresh.url, tmp_path / "one" / "c.jsonl", tmp_path / "one" / "out.json", n,
                           env).wait(timeout=120) == 0
    in_one_go = json.loads((tmp_path / "one" / "out.json").read_text())
    assert resumed["replies"] == in_one_go["replies"]
    assert in_one_go["stats"]["failures"] == {"invalid_json": 8} and in_one_go["stats"]["ok"] == 72
    assert resumed["stats"]["cached"] >= 20
    assert_key_written_nowhere(tmp_path)


def assert_key_written_nowhere(root: Path):
    for path in root.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def test_api_key_in_no_file_written(tmp_path, monkeypatch):
    monkeypatch.setenv("STANDIN_TEACHER_KEY", KEY)
    with StandinTeacher(resumable_script, max_requests=50) as server:
        with open_teacher(server.url, "standin", "STANDIN_TEACHER_KEY", 4, tmp_path / "out" / "cache.jsonl",
                          progress=False) as teacher:
            teacher.ask([TeacherRequest(chat(f"item {i}"), want_json=True) for i in range(12)])
            assert KEY not in repr(teacher.backend) and KEY not in json.dumps(teacher.stats.to_dict())
    assert server.total == 13
    assert_key_written_nowhere(tmp_path)


def test_local_teacher(tmp_path, tiny_llama_dir):
    requests = [TeacherRequest(chat(f"Say {w}."), max_tokens=6, temperature=0.0) for w in ("one", "two", "one")]
    requests.append(TeacherRequest(chat("Give JSON."), want_json=True, max_tokens=6))
    with open_teacher(str(tiny_llama_dir), None, None, 2, tmp_path / "c.jsonl", progress=False) as teacher:
        replies = teacher.ask(requests)
        assert teacher.model_id == str(tiny_llama_dir)
        # the duplicate asked once; the JSON one is a random model's text, re-asked when it does not parse
        assert teacher.stats.requests == 3 + teacher.stats.reasked
    assert replies[0].text == replies[2].text and replies[2].cached
    assert replies[3].ok == (replies[3].data is not None)
    with open_teacher(str(tiny_llama_dir), None, None, 2, tmp_path / "c.jsonl", progress=False) as teacher:
        assert [r.text for r in teacher.ask(requests)] == [r.text for r in replies]
        assert teacher.stats.requests == 0
