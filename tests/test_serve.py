"""The OpenAI-compatible server, driven by the official `openai` client against a tiny model.

The server runs in a thread on a free local port with the hf backend; greedy answers are
compared with transformers' own greedy generate() on the same prompt.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

openai = pytest.importorskip("openai")

KEY = "sk-test-key"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def backend(tiny_llama_dir):
    from subjectlm.backends.hf import HFBackend

    return HFBackend(tiny_llama_dir)


@pytest.fixture(scope="module")
def base_url(backend):
    import uvicorn

    from subjectlm.serve.server import create_app

    app = create_app(backend, api_key=KEY, max_tokens_limit=64, max_body_bytes=4096)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    assert server.started, "server did not start"
    yield f"http://127.0.0.1:{port}/v1"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def client(base_url):
    return openai.OpenAI(base_url=base_url, api_key=KEY, max_retries=0, timeout=300)


def _greedy(backend, ids, n):
    import torch

    with torch.no_grad():
        out = backend.model.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False,
                                     eos_token_id=backend.stop_ids, pad_token_id=backend.tokenizer.pad_token_id)
    return backend.tokenizer.decode(out[0, len(ids):], skip_special_tokens=True), out.shape[1] - len(ids)


MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


def test_models_lists_the_loaded_model(client, backend):
    assert [m.id for m in client.models.list().data] == [backend.model_id]


def test_chat_matches_transformers_greedy(client, backend):
    reply = client.chat.completions.create(model="any", messages=MESSAGES, max_tokens=8, temperature=0)
    text = backend.tokenizer.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    ids = backend.tokenizer(text, add_special_tokens=False)["input_ids"]
    expected, n_new = _greedy(backend, ids, 8)
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content == expected
    assert reply.usage.prompt_tokens == len(ids)
    assert reply.usage.completion_tokens == n_new
    assert reply.choices[0].finish_reason == ("length" if n_new == 8 else "stop")


def test_streaming_chat_equals_non_streaming(client):
    whole = client.chat.completions.create(model="any", messages=MESSAGES, max_tokens=8).choices[0].message.content
    chunks = list(client.chat.completions.create(model="any", messages=MESSAGES, max_tokens=8, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == whole
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    assert len(chunks) >= 3  # role chunk, at least one text chunk, the finishing chunk


def test_completions_plain_and_streamed(client, backend):
    prompt = "The water cycle"
    reply = client.completions.create(model="any", prompt=prompt, max_tokens=6)
    expected, _ = _greedy(backend, backend.tokenizer(prompt)["input_ids"], 6)
    assert reply.choices[0].text == expected
    streamed = "".join(c.choices[0].text for c in client.completions.create(model="any", prompt=prompt, max_tokens=6,
                                                                          stream=True))
    assert streamed == expected


def test_stop_string_cuts_the_answer(client):
    full = client.completions.create(model="any", prompt="The water cycle", max_tokens=6).choices[0].text
    assert len(full) > 2
    stop = full[2:4]
    cut = client.completions.create(model="any", prompt="The water cycle", max_tokens=6, stop=[stop])
    assert cut.choices[0].text == full[: full.index(stop)]
    assert cut.choices[0].finish_reason == "stop"


def test_requests_without_the_key_get_401(base_url):
    bad = openai.OpenAI(base_url=base_url, api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as err:
        bad.chat.completions.create(model="any", messages=MESSAGES, max_tokens=2)
    assert err.value.status_code == 401
    import httpx

    assert httpx.get(base_url + "/models").status_code == 401


@pytest.mark.parametrize("kwargs, status, words", [
    ({"messages": MESSAGES, "max_tokens": 10**9}, 400, "max_tokens"),
    ({"messages": [{"role": "wizard", "content": "hi"}]}, 400, "role"),
    ({"messages": []}, 400, "messages"),
    ({"messages": MESSAGES, "temperature": -1}, 400, "temperature"),
    ({"messages": [{"role": "user", "content": "x" * 10_000}]}, 413, "bytes"),
])
def test_bad_requests_get_4xx_with_a_message(client, kwargs, status, words):
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="any", **kwargs)
    assert err.value.status_code == status
    assert words in err.value.body["message"]


def test_bad_json_and_chunked_oversize_then_still_serving(base_url, client):
    import httpx

    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    r = httpx.post(base_url + "/chat/completions", content=b"{not json", headers=headers)
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]

    def chunks():  # no Content-Length: the limit must hold while reading too
        for _ in range(10):
            yield b" " * 1000

    r = httpx.post(base_url + "/chat/completions", content=chunks(), headers=headers)
    assert r.status_code == 413
    reply = client.chat.completions.create(model="any", messages=MESSAGES, max_tokens=2)
    assert reply.choices[0].finish_reason in ("stop", "length")


def test_cut_at_stop_holds_back_a_partial_stop():
    from subjectlm.backends.text import cut_at_stop

    assert cut_at_stop("hello wor", ["world"]) == ("hello wor", False, 3)
    assert cut_at_stop("hello world!", ["world"]) == ("hello ", True, 0)
    assert cut_at_stop("abc", []) == ("abc", False, 0)


def test_serve_config_defaults_are_safe(monkeypatch):
    from subjectlm.config import ConfigError
    from subjectlm.serve.server import ServeConfig

    monkeypatch.delenv("SUBJECTLM_API_KEY", raising=False)
    config = ServeConfig()
    assert config.host == "127.0.0.1" and config.api_key is None
    monkeypatch.setenv("SUBJECTLM_API_KEY", "k")
    assert ServeConfig().api_key == "k"
    with pytest.raises(ConfigError, match="backend"):
        ServeConfig(backend="tgi")


def test_vllm_backend_is_a_clear_error_without_vllm(tiny_llama_dir):
    import importlib.util

    from subjectlm.backends import ModelSpec, open_backend
    from subjectlm.errors import UserError

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here")
    with pytest.raises(UserError, match="vLLM"):
        open_backend(ModelSpec(tiny_llama_dir, "vllm"))


def test_completions_without_prompt_is_a_400(base_url):
    import httpx

    r = httpx.post(base_url + "/completions", json={"max_tokens": 2}, headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 400 and r.json()["error"]["message"].startswith("prompt")


def test_cli_serve_process(tiny_llama_dir, tmp_path):
    """`subjectlm serve` as users run it: a process on 127.0.0.1 that the openai client can use."""
    import os
    import subprocess
    import sys

    port = _free_port()
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "subjectlm", "serve", "--model", str(tiny_llama_dir),
                             "--port", str(port)], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "SUBJECTLM_API_KEY": "env-key"})
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="env-key", max_retries=0, timeout=60)
        deadline = time.time() + 120
        while True:
            try:
                models = client.models.list()
                break
            except openai.APIConnectionError:
                assert proc.poll() is None and time.time() < deadline, (tmp_path / "serve.log").read_text()
                time.sleep(0.5)
        assert [m.id for m in models.data] == [tiny_llama_dir.name]
        reply = client.chat.completions.create(model="x", messages=MESSAGES, max_tokens=3)
        assert reply.usage.completion_tokens <= 3
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="nope", max_retries=0).models.list()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    assert "serving" in (tmp_path / "serve.log").read_text()


@pytest.mark.parametrize(("flags", "dtype"), [(["--dtype", "bfloat16"], "bfloat16"), ([], "float32")])
def test_cli_serve_loads_the_weights_in_the_dtype_asked(tiny_llama_dir, monkeypatch, capsys, flags, dtype):
    """`subjectlm serve --dtype bfloat16` serves bf16 weights; without --dtype the CPU gets fp32 (on a GPU, the
    checkpoint's own). The CLI runs as users run it, up to the point where uvicorn would start listening."""
    import torch
    import uvicorn

    from subjectlm.cli import main
    from subjectlm.serve import server

    seen = {}
    real_create_app = server.create_app

    def create_app(backend, *args):
        seen["dtypes"] = {p.dtype for p in backend.model.parameters()}
        seen["device"] = str(backend.device)
        return real_create_app(backend, *args)

    monkeypatch.setattr(server, "create_app", create_app)
    monkeypatch.setattr(uvicorn.Server, "run", lambda self: None)
    assert main(["serve", "--model", str(tiny_llama_dir), "--device", "cpu", "--port", str(_free_port()),
                 *flags]) == 0
    assert seen == {"dtypes": {getattr(torch, dtype)}, "device": "cpu"}
    assert "serving" in capsys.readouterr().out
