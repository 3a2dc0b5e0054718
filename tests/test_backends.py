"""The generation backends on tiny models: stream and generate agree, seeds do not depend on the
batch, per-request limits hold in a batch, cancel stops a stream, the GGUF path (generation and scores)
needs no torch."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import threading

import pytest

from subjectlm.backends import GenParams, ModelSpec, open_backend
from subjectlm.backends.text import chat_text

PROMPTS = [[{"role": "user", "content": "What is the water cycle?"}],
           [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Why does it rain?"}],
           "The capital of France is"]


def _streamed(backend, prompt, params):
    pieces = list(backend.stream(prompt, params))
    return "".join(p.text for p in pieces), pieces[-1]


@pytest.fixture(scope="module")
def hf(tiny_llama_dir):
    return open_backend(ModelSpec(tiny_llama_dir, "hf", batch_size=3))


@pytest.fixture(scope="module")
def gguf_path(tiny_llama_dir, tmp_path_factory):
    if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("llama-cpp-python / gguf are not installed (pip install 'subjectlm[gguf]')")
    from subjectlm.export.gguf import export_gguf

    return export_gguf(tiny_llama_dir, tmp_path_factory.mktemp("gguf") / "tiny-f16.gguf", "f16", progress=False).path


def test_chat_text_with_and_without_a_template(smollm_tokenizer):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    assert chat_text(smollm_tokenizer, messages) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")

    class NoTemplate:
        chat_template = None

    assert chat_text(NoTemplate(), messages) == "Be brief.\n\nhi\n\n"


def test_hf_batched_greedy_equals_streamed(hf):
    params = GenParams(max_tokens=6)
    answers = hf.generate(PROMPTS, params)
    for prompt, answer in zip(PROMPTS, answers):
        text, last = _streamed(hf, prompt, params)
        assert (answer.text, answer.finish_reason, answer.completion_tokens) == (
            text, last.finish_reason, last.completion_tokens)
        assert answer.prompt_tokens == last.prompt_tokens == len(hf.prompt_ids(prompt))


def test_hf_seeded_sampling_does_not_depend_on_the_batch(hf):
    hot = GenParams(max_tokens=8, temperature=1.5, seed=11)
    alone, _ = _streamed(hf, PROMPTS[0], hot)
    batched = hf.generate(PROMPTS, [hot, GenParams(max_tokens=8, temperature=1.0, seed=3), GenParams(max_tokens=8)])
    assert batched[0].text == alone
    other_seed = hf.generate([PROMPTS[0]], GenParams(max_tokens=8, temperature=1.5, seed=12))[0].text
    assert other_seed != alone  # 8 tokens drawn from ~49k at temperature 1.5: equal only by a fluke


def test_hf_per_prompt_limits_in_one_batch(hf):
    full = hf.generate([PROMPTS[2]], GenParams(max_tokens=8))[0]
    assert len(full.text) > 4
    stop = full.text[2:4]
    short, cut, whole = hf.generate([PROMPTS[2]] * 3, [GenParams(max_tokens=3), GenParams(max_tokens=8, stop=[stop]),
                                                       GenParams(max_tokens=8)])
    assert short.completion_tokens == 3 and short.finish_reason == "length"
    assert short.text == _streamed(hf, PROMPTS[2], GenParams(max_tokens=3))[0]
    assert cut.text == full.text[: full.text.index(stop)] and cut.finish_reason == "stop"
    assert whole.text == full.text


def test_hf_cancel_stops_the_stream(hf):
    cancel = threading.Event()
    cancel.set()
    assert [p.finish_reason for p in hf.stream(PROMPTS[2], GenParams(max_tokens=500), cancel)] == ["cancelled"]
    cancel = threading.Event()
    pieces = []
    for piece in hf.stream(PROMPTS[2], GenParams(max_tokens=500), cancel):
        pieces.append(piece)
        cancel.set()  # after the first text: generate() must end at its next step
    assert pieces[-1].finish_reason == "cancelled" and pieces[-1].completion_tokens < 500
    assert not hf.lock.locked()


def test_gguf_generate_equals_stream_and_cancel_stops(gguf_path):
    backend = open_backend(ModelSpec(gguf_path, n_ctx=512))
    try:
        params = GenParams(max_tokens=6)
        for prompt, answer in zip(PROMPTS, backend.generate(PROMPTS, params)):
            text, last = _streamed(backend, prompt, params)
            assert (answer.text, answer.finish_reason) == (text, last.finish_reason)
        cancel = threading.Event()
        pieces = []
        for piece in backend.stream(PROMPTS[2], GenParams(max_tokens=400), cancel):
            pieces.append(piece)
            cancel.set()
        assert pieces[-1].finish_reason == "cancelled" and pieces[-1].completion_tokens < 400
        assert not backend.lock.locked()
    finally:
        backend.close()


def test_the_gguf_path_does_not_import_torch(gguf_path):
    code = ("import sys\n"
            "from subjectlm.backends import GenParams, ModelSpec, open_backend\n"
            "import subjectlm.export.verify, subjectlm.serve.server, subjectlm.serve.chat, subjectlm.eval.exam.runner\n"
            f"b = open_backend(ModelSpec({str(gguf_path)!r}, n_ctx=256))\n"
            "a = b.generate([[{'role': 'user', 'content': 'hi'}]], GenParams(max_tokens=3))[0]\n"
            "letters = b.score_next(['Q: 1+1?\\nA. 2\\nB. 3\\nAnswer:'], [' A', ' B'])[0]\n"
            "cloze = b.score_continuations(['The sky is'], [[' blue', ' green']])[0]\n"
            "b.close()\n"
            "assert a.completion_tokens > 0, a\n"
            "assert len(letters) == 2 and all(v < 0 for v in letters + cloze), (letters, cloze)\n"
            "print('torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_open_backend_errors(tmp_path):
    from subjectlm.config import ConfigError

    with pytest.raises(ConfigError, match="use --backend llamacpp"):
        open_backend(ModelSpec(tmp_path / "m.gguf", "hf"))
    with pytest.raises(ConfigError, match="needs a .gguf"):
        open_backend(ModelSpec(tmp_path, "llamacpp"))
    with pytest.raises(ConfigError, match="does not exist"):
        open_backend(ModelSpec(tmp_path / "missing.gguf"))
    with pytest.raises(ConfigError, match="not one of"):
        open_backend(ModelSpec(tmp_path, "tgi"))
