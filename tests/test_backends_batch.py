"""Batched serving on the hf backend: concurrent streams decoded together give the serial answers.

The decoder is held (the backend's lock) until every request of a test has been submitted,
so that they really are decoded as one batch (`largest_batch` says so).
"""

from __future__ import annotations

import threading
import time

import pytest

from subjectlm.backends import GenParams, ModelSpec, open_backend

PROMPTS = [[{"role": "user", "content": "What is the water cycle?"}],
           [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Why does it rain so often here?"}],
           "The capital of France is",
           [{"role": "user", "content": "Hi"}]]


@pytest.fixture(scope="module")
def serial(tiny_llama_dir):
    return open_backend(ModelSpec(tiny_llama_dir, "hf"))


@pytest.fixture(scope="module")
def batched(tiny_llama_dir):
    return open_backend(ModelSpec(tiny_llama_dir, "hf"), parallel=8)


def _answer(backend, prompt, params, cancel=None):
    pieces = list(backend.stream(prompt, params, cancel))
    return "".join(p.text for p in pieces), pieces[-1].finish_reason, pieces[-1].completion_tokens


def _together(backend, jobs):
    """Run (prompt, params, cancel-after-first-piece) jobs as concurrent streams in one batch."""
    results = [None] * len(jobs)
    submitted = []

    def run(i, prompt, params, leave):
        cancel = threading.Event()
        pieces = []
        for piece in backend.stream(prompt, params, cancel):
            if not pieces:
                submitted.append(i)
            pieces.append(piece)
            if leave:
                cancel.set()
        results[i] = ("".join(p.text for p in pieces), pieces[-1].finish_reason, pieces[-1].completion_tokens)

    before = backend.decoder.largest_batch
    with backend.lock:  # the decoder waits here until every request is queued
        threads = [threading.Thread(target=run, args=(i, *job)) for i, job in enumerate(jobs)]
        for t in threads:
            t.start()
        deadline = time.time() + 30
        while backend.decoder.pending.qsize() < len(jobs) - 1 and time.time() < deadline:
            time.sleep(0.01)  # one request is already taken by the decoder, which waits for the lock
    for t in threads:
        t.join(timeout=120)
    assert backend.decoder.largest_batch >= min(len(jobs), max(before, len(jobs)))
    return results


def test_batched_greedy_answers_equal_serial_answers(serial, batched):
    params = GenParams(max_tokens=12)
    got = _together(batched, [(p, params, False) for p in PROMPTS])
    assert batched.decoder.largest_batch == len(PROMPTS)
    assert got == [_answer(serial, p, params) for p in PROMPTS]


def test_per_request_stop_strings_and_limits_inside_a_batch(serial, batched):
    full = _answer(serial, PROMPTS[2], GenParams(max_tokens=12))[0]
    assert len(full) > 4
    stop = full[2:4]
    jobs = [(PROMPTS[2], GenParams(max_tokens=3), False), (PROMPTS[2], GenParams(max_tokens=12, stop=[stop]), False),
            (PROMPTS[0], GenParams(max_tokens=12), False), (PROMPTS[1], GenParams(max_tokens=5, temperature=1.3, seed=4),
                                                         False)]
    short, cut, whole, sampled = _together(batched, jobs)
    assert short == _answer(serial, PROMPTS[2], GenParams(max_tokens=3)) and short[1:] == ("length", 3)
    assert cut[0] == full[: full.index(stop)] and cut[1] == "stop"
    assert whole == _answer(serial, PROMPTS[0], GenParams(max_tokens=12))
    # sampling is per row and seeded: the same answer as alone, whatever shared the batch
    assert sampled == _answer(serial, PROMPTS[1], GenParams(max_tokens=5, temperature=1.3, seed=4))


def test_a_cancelled_request_leaves_the_others_running(serial, batched):
    params = GenParams(max_tokens=12)
    got = _together(batched, [(PROMPTS[0], params, True), (PROMPTS[1], params, False), (PROMPTS[2], params, False)])
    assert got[0][1] == "cancelled" and got[0][2] < 12
    assert got[1:] == [_answer(serial, p, params) for p in PROMPTS[1:3]]
    assert not batched.lock.locked()


def test_sliding_window_models_are_not_batched(tiny_llama_dir):
    """Only plain growing KV caches are batched; a sliding-window cache is served one at a time."""
    from transformers import AutoModelForCausalLM, MistralConfig

    from subjectlm.backends.hf_batch import supports_batching
    from subjectlm.models import load_model

    assert supports_batching(load_model(tiny_llama_dir, dtype="fp32"))
    sliding = MistralConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                            num_attention_heads=4, num_key_value_heads=2, sliding_window=16)
    assert not supports_batching(AutoModelForCausalLM.from_config(sliding))


def test_a_request_arriving_mid_batch_joins_it_and_finishes_first(serial, batched, monkeypatch):
    """Continuous batching: a short request sent while a long one decodes joins the running batch (it
    does not wait for the long one to end), and both answers are the serial ones, token for token."""
    long_params, short_params = GenParams(max_tokens=60), GenParams(max_tokens=6)
    want_long = _answer(serial, PROMPTS[0], long_params)
    want_short = _answer(serial, PROMPTS[2], short_params)
    assert want_long[2] == 60  # the tiny model does not stop early: the long row is still running
    forward = batched.model.forward

    def slow_forward(*args, **kwargs):  # a few ms per step, so the long answer takes longer than a join
        time.sleep(0.01)
        return forward(*args, **kwargs)

    monkeypatch.setattr(batched.model, "forward", slow_forward)
    before = batched.decoder.largest_batch
    batched.decoder.largest_batch = 0
    done: dict[str, float] = {}
    results: dict[str, tuple] = {}
    started = threading.Event()

    def run(name, prompt, params):
        pieces = []
        for piece in batched.stream(prompt, params, threading.Event()):
            pieces.append(piece)
            started.set()
        done[name] = time.monotonic()
        results[name] = ("".join(p.text for p in pieces), pieces[-1].finish_reason, pieces[-1].completion_tokens)

    long_thread = threading.Thread(target=run, args=("long", PROMPTS[0], long_params))
    long_thread.start()
    assert started.wait(60)
    time.sleep(0.05)  # a few decode steps in
    run("short", PROMPTS[2], short_params)
    long_thread.join(timeout=120)
    assert results["short"] == want_short and results["long"] == want_long
    assert done["short"] < done["long"]
    assert batched.decoder.largest_batch == 2
    batched.decoder.largest_batch = max(before, 2)
