"""The teacher: any model asked many questions, every reply cached, nothing asked twice.

    teacher = open_teacher("http://127.0.0.1:8000/v1", "qwen", api_key_env="TEACHER_KEY", concurrency=8,
                           cache_path=out / "teacher_cache.jsonl")
    replies = teacher.ask([TeacherRequest(messages, want_json=True), ...])   # same order, never raises per reply
    teacher.stats.to_dict()   # requests, cached, failures by reason, tokens in/out, seconds, cost

Every reply received is appended to the cache (JSON lines, fsynced) under a hash of (model, messages,
parameters) before it is used, so a run killed at any point (SIGKILL included) resumes by reading the
cache and asks the teacher only what it had no reply for. Identical requests in one call are asked once.

A reply is reasoning-stripped (`<think>` blocks) and, for `want_json`, parsed tolerantly (jsonparse.py). A
reply that is empty or does not parse is asked once more (a request of its own: the retry index is part of
the hashed parameters, and so of the seed sent), then counted as failed with its reason: `empty_reply`,
`invalid_json`, `truncated_json` (cut at max_tokens). A request that fails over HTTP after the backend's
retries counts by the backend's reason (`http_500`, `http_429`, `timeout`, `connection`, ...). One bad
reply never stops the run; only a wrong key, URL or model name (401/403/404: every request would fail) does.

A remote teacher (an OpenAI-compatible URL) is asked `concurrency` requests at a time, each reply handled as
it comes; a local one (`default`, a model directory, a .gguf) through open_backend, in batches.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from subjectlm.backends import Answer, GenParams
from subjectlm.backends.openai import EndpointError, strip_reasoning
from subjectlm.errors import UserError
from subjectlm.io import read_jsonl
from subjectlm.synth.jsonparse import ReplyNotJSON, parse_json_reply

ASKS = 2  # a reply that is empty or does not parse is asked once more, then counted as failed


@dataclasses.dataclass
class TeacherRequest:
    messages: list[dict]
    want_json: bool = False
    max_tokens: int = 512
    temperature: float = 0.7
    tag: str = ""  # the caller's label (not sent, not hashed)


@dataclasses.dataclass
class TeacherReply:
    ok: bool
    text: str                # the reply without reasoning ("" when no reply came)
    data: Any | None         # the parsed JSON of a `want_json` request
    reason: str | None       # why it failed: empty_reply, invalid_json, truncated_json, http_500, timeout, ...
    prompt_tokens: int
    completion_tokens: int
    cached: bool             # answered from the cache (or by an identical request in the same call)


@dataclasses.dataclass
class TeacherStats:
    requests: int = 0             # sent to the teacher (re-asks included)
    cached: int = 0               # answered from the cache
    reasked: int = 0              # replies asked once more because they were empty or did not parse
    ok: int = 0
    failures: Counter = dataclasses.field(default_factory=Counter)  # reason -> count
    http_retries: dict = dataclasses.field(default_factory=dict)    # the backend's retries by reason
    prompt_tokens: int = 0        # of the requests sent in this run (cached replies cost nothing)
    completion_tokens: int = 0
    seconds: float = 0.0
    price_in: float = 0.0         # per million prompt tokens
    price_out: float = 0.0        # per million completion tokens

    @property
    def cost(self) -> float:
        return (self.prompt_tokens * self.price_in + self.completion_tokens * self.price_out) / 1e6

    def to_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "cached": self.cached, "reasked": self.reasked, "ok": self.ok,
                "failed": sum(self.failures.values()), "failures": dict(sorted(self.failures.items())),
                "http_retries": dict(sorted(self.http_retries.items())), "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "seconds": round(self.seconds, 3),
                "cost": round(self.cost, 6)}


def request_key(model_id: str, request: TeacherRequest, ask: int) -> str:
    """The cache key: a hash of the model, the messages and every parameter that shapes the reply."""
    params = {"max_tokens": request.max_tokens, "temperature": request.temperature, "json": request.want_json,
              "ask": ask}
    blob = json.dumps([model_id, request.messages, params], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def request_seed(key: str) -> int:
    """The sampling seed sent with a request: from its key, so the same request samples the same way and a
    re-ask (another key) differently."""
    return int(key[:8], 16) % (2 ** 31)


class ReplyCache:
    """key -> reply record, read from a JSON-lines file and appended to it (fsynced) one reply at a time."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        rows = read_jsonl(self.path, repair=True, missing_ok=True)  # a line cut by a kill is dropped
        self.records = {row["key"]: row for row in rows if isinstance(row, dict) and "key" in row}
        self.handle = open(self.path, "ab")

    def get(self, key: str) -> dict | None:
        return self.records.get(key)

    def add(self, record: dict) -> None:
        self.handle.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.records[record["key"]] = record

    def close(self) -> None:
        self.handle.close()


@dataclasses.dataclass
class _Job:
    key: str
    request: TeacherRequest
    ask: int          # 0 for the first ask, 1 for the re-ask
    indexes: list[int]


class Teacher:
    def __init__(self, backend, cache_path: str | Path, model_id: str, concurrency: int = 8, *,
                 price_in: float = 0.0, price_out: float = 0.0, progress: bool = True):
        self.backend = backend
        self.cache = ReplyCache(cache_path)
        self.model_id = model_id
        self.concurrency = concurrency
        self.remote = hasattr(backend, "complete")  # an OpenAI-compatible server: one request per reply
        self.progress = progress
        self.stats = TeacherStats(price_in=price_in, price_out=price_out)

    def ask(self, requests: Sequence[TeacherRequest], desc: str = "teacher") -> list[TeacherReply]:
        """A reply for each request, in order; failures are replies with `ok=False` and a reason."""
        from tqdm import tqdm

        start = time.monotonic()
        replies: list[TeacherReply | None] = [None] * len(requests)
        jobs: dict[str, _Job] = {}
        for i, request in enumerate(requests):
            key = request_key(self.model_id, request, 0)
            if key in jobs:
                jobs[key].indexes.append(i)
            else:
                jobs[key] = _Job(key, request, 0, [i])
        bar = tqdm(total=len(jobs), desc=desc, unit="item", disable=not self.progress, dynamic_ncols=True)
        tokens_before = self.stats.completion_tokens
        round_jobs = list(jobs.values())
        try:
            while round_jobs:  # round 0: first asks; round 1: re-asks of replies that did not parse
                to_send, reasks = [], []
                for job in round_jobs:
                    record = self.cache.get(job.key)
                    if record is None:
                        to_send.append(job)
                        continue
                    self.stats.cached += 1
                    reasks += self._settle(job, record, replies, cached=True, bar=bar)
                for job, record in self._send(to_send):
                    reasks += self._settle(job, record, replies, cached=False, bar=bar)
                    done = self.stats.completion_tokens - tokens_before
                    bar.set_postfix_str(f"{done / max(time.monotonic() - start, 1e-9):.0f} tok/s", refresh=False)
                round_jobs = reasks
        finally:
            bar.close()
            self.stats.seconds += time.monotonic() - start
            self.stats.http_retries = dict(getattr(self.backend, "retried", {}))
        return replies  # type: ignore[return-value]

    def _settle(self, job: _Job, record: dict, replies: list, cached: bool, bar) -> list[_Job]:
        """Turn a reply record into the replies of its requests, or into a re-ask."""
        reply = _reply_of(job.request, record, cached)
        if not reply.ok and reply.reason in _REASKABLE and job.ask + 1 < ASKS:
            self.stats.reasked += 1
            return [_Job(request_key(self.model_id, job.request, job.ask + 1), job.request, job.ask + 1,
                         job.indexes)]
        if reply.ok:
            self.stats.ok += 1
        else:
            self.stats.failures[reply.reason] += 1
        for n, i in enumerate(job.indexes):
            replies[i] = reply if n == 0 else dataclasses.replace(reply, cached=True)
        bar.update(1)
        return []

    def _send(self, jobs: list[_Job]) -> Iterator[tuple[_Job, dict]]:
        """Each job with its reply record (cached before it is yielded), as replies come in."""
        if not jobs:
            return
        answers = self._remote(jobs) if self.remote else self._local(jobs)
        for job, answer in answers:
            self.stats.requests += 1
            if isinstance(answer, EndpointError):
                yield job, {"key": job.key, "error": answer.reason}  # not cached: a resumed run asks again
                continue
            self.stats.prompt_tokens += answer.prompt_tokens
            self.stats.completion_tokens += answer.completion_tokens
            record = {"key": job.key, "model": self.model_id, "ask": job.ask, "messages": job.request.messages,
                      "max_tokens": job.request.max_tokens, "temperature": job.request.temperature,
                      "json": job.request.want_json, "text": answer.text, "finish_reason": answer.finish_reason,
                      "prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.completion_tokens}
            self.cache.add(record)
            yield job, record

    def _params(self, job: _Job) -> GenParams:
        return GenParams(max_tokens=job.request.max_tokens, temperature=job.request.temperature,
                         seed=request_seed(job.key))

    def _remote(self, jobs: list[_Job]) -> Iterator[tuple[_Job, Answer | EndpointError]]:
        pool = ThreadPoolExecutor(max_workers=self.concurrency)
        queue = iter(jobs)
        running: dict = {}

        def submit():
            job = next(queue, None)
            if job is not None:
                running[pool.submit(self._complete, job)] = job

        try:
            for _ in range(self.concurrency * 2):  # a few queued beyond the slots: no gap between requests
                submit()
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    job = running.pop(future)
                    submit()
                    answer = future.result()
                    if isinstance(answer, EndpointError) and answer.fatal:
                        raise UserError(f"teacher: {answer} (every request would fail the same way)")
                    yield job, answer
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _complete(self, job: _Job) -> Answer | EndpointError:
        try:
            return self.backend.complete(job.request.messages, self._params(job), json_mode=job.request.want_json)
        except EndpointError as exc:
            return exc

    def _local(self, jobs: list[_Job]) -> Iterable[tuple[_Job, Answer]]:
        for at in range(0, len(jobs), self.concurrency):
            batch = jobs[at: at + self.concurrency]
            answers = self.backend.generate([job.request.messages for job in batch],
                                            [self._params(job) for job in batch])
            yield from zip(batch, answers)

    def close(self) -> None:
        self.cache.close()
        self.backend.close()

    def __enter__(self) -> "Teacher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_REASKABLE = ("empty_reply", "invalid_json", "truncated_json")


def _reply_of(request: TeacherRequest, record: dict, cached: bool) -> TeacherReply:
    """A reply record (cached or just received) judged: reasoning stripped, JSON parsed."""
    if "error" in record:
        return TeacherReply(False, "", None, record["error"], 0, 0, cached)
    text = strip_reasoning(record["text"])
    tokens = (record["prompt_tokens"], record["completion_tokens"])
    if not text:
        return TeacherReply(False, text, None, "empty_reply", *tokens, cached)
    if not request.want_json:
        return TeacherReply(True, text, None, None, *tokens, cached)
    try:
        return TeacherReply(True, text, parse_json_reply(text), None, *tokens, cached)
    except ReplyNotJSON:
        reason = "truncated_json" if record.get("finish_reason") == "length" else "invalid_json"
        return TeacherReply(False, text, None, reason, *tokens, cached)


def open_teacher(teacher: str, teacher_model: str | None = None, api_key_env: str | None = None,
                 concurrency: int = 8, cache_path: str | Path = "teacher_cache.jsonl", *, price_in: float = 0.0,
                 price_out: float = 0.0, timeout: float = 120.0, max_retries: int = 5, backend: str = "auto",
                 dtype: str | None = None, device: str | None = None, progress: bool = True) -> Teacher:
    """A Teacher over an OpenAI-compatible URL, or over a local model (`default`, a directory, a .gguf)."""
    from subjectlm.backends import ModelSpec, open_backend

    remote = str(teacher).startswith(("http://", "https://"))
    if remote:
        if api_key_env and not os.environ.get(api_key_env):
            print(f"warning: environment variable {api_key_env} is not set: the teacher is asked without an API key",
                  file=sys.stderr)
        model = open_backend(ModelSpec(teacher, "openai"), served_model=teacher_model, api_key_env=api_key_env,
                             concurrency=concurrency, timeout=timeout, max_retries=max_retries)
        model_id = model.model_id
    else:
        model = open_backend(ModelSpec(teacher, backend, dtype=dtype, device=device, batch_size=concurrency))
        model_id = teacher_model or str(teacher)
    return Teacher(model, cache_path, model_id, concurrency, price_in=price_in, price_out=price_out,
                   progress=progress)
