"""One log-likelihood API in the backends: `loglikelihood` (sum and token count per continuation) and
`score_rolling` (windowed, for perplexity), the same on transformers, llama.cpp and (a stand-in) vLLM;
`eval ppl`, `eval qa`'s reference log-likelihood and the export stage's perplexity go through it.

Tolerances: a GGUF in f32 holds the HF weights exactly, so only the kernels differ (llama.cpp's ggml
against torch): a summed log-prob may differ by 2e-5 nats per token it sums (measured on 2 cores,
llama-cpp-python 0.3.36: 8.8e-4 over a 454-token file's 4904 nats, 1.9e-6 per token; QA references
at most 1.0e-4 on an 18-token sum, 5.6e-6 per token). f16 rounds the weights: within 1% of the
perplexity (as `export verify` allows).
"""

from __future__ import annotations

import json
import math

import pytest

from subjectlm.backends.score_rolling import rolling_tokens, rolling_windows

HAVE_LLAMA_CPP = True
try:
    import llama_cpp  # noqa: F401
except ImportError:
    HAVE_LLAMA_CPP = False
needs_llama_cpp = pytest.mark.skipif(not HAVE_LLAMA_CPP, reason="llama-cpp-python is not installed")

HELDOUT = "examples/data/heldout.txt"
ZH = "光合作用是植物利用光能把二氧化碳和水合成有机物的过程。" * 3
QA_ROWS = [
    {"id": "qa1", "question": "Which rock is the oldest on Kestrel Island?", "reference": "The Corran Gabbro."},
    {"id": "qa2", "question": "In which sea does Kestrel Island lie?", "reference": "The Sundering Sea."},
    {"id": "qa3", "question": "哈罗山是什么火山？", "reference": "层状火山。"},
    {"id": "qa4", "question": "What kind of fault is the Skerry Fault, and how fast does it slip?",
     "reference": "A right-lateral strike-slip fault slipping 2.1 mm per year."},
]
GGUF_F32_TOL = 2e-5   # nats per scored token, on a summed log-prob (QA reference, a file's total NLL)
GGUF_F16_REL = 0.01   # relative, on a perplexity


# --- the windows (pure) -----------------------------------------------------------------------------


def _old_ppl_windows(n: int, max_length: int, stride: int) -> list[tuple[int, int]]:
    """The windows `eval ppl` used before the backends scored it: (first counted target, end) per window,
    as eval/ppl.py's sliding_nll computed them (a window of max_length tokens, its first token context)."""
    out, prev_end = [], 0
    for begin in range(0, max(n - 1, 1), stride):
        end = min(begin + max_length, n)
        new = min(end - max(prev_end, 1), end - begin - 1)
        out.append((end - new, end))
        prev_end = end
        if end == n:
            break
    return out


def test_rolling_windows_golden():
    # lm-eval's windows (stride == max_length): each predicts max_length new tokens from the one before
    assert rolling_windows(10, 4, 4) == [(0, 4, 4), (4, 8, 4), (8, 9, 1)]
    # overlapping windows: each new token has at least max_length - stride + 1 tokens of context
    assert rolling_windows(10, 4, 2) == [(0, 4, 4), (2, 6, 2), (4, 8, 2), (6, 9, 1)]
    # stride == max_length + 1: the token at each later window's start is read, never predicted
    assert rolling_windows(10, 4, 5) == [(0, 4, 4), (5, 9, 4)]
    assert rolling_windows(5, 100, 100) == [(0, 4, 4)]  # one window: every token after the first
    assert rolling_windows(1, 4, 4) == [] and rolling_windows(0, 4, 4) == []
    with pytest.raises(ValueError, match="stride must be between 1 and max_length"):
        rolling_windows(10, 4, 6)


@pytest.mark.parametrize("n", [2, 3, 17, 40, 41, 100])
@pytest.mark.parametrize("max_length, stride", [(16, 6), (16, 16), (16, 15), (2, 1), (2, 2), (7, 3)])
def test_eval_ppl_windows_are_the_old_ones(n, max_length, stride):
    """`eval ppl --max_length L --stride S` = score_rolling(max_length=L-1, stride=S): the same targets
    in the same windows as before (each counted target's window, and which targets are counted)."""
    new = [(end + 1 - count, end + 1) for _, end, count in rolling_windows(n, max_length - 1, stride)]
    assert new == _old_ppl_windows(n, max_length, stride)
    covered = [t for first, end in new for t in range(first, end)]
    assert len(covered) == len(set(covered))  # no target counted twice


def test_rolling_tokens_prefix_rule():
    def encode(text, add_special_tokens=True):
        return ([1] if add_special_tokens else []) + [ord(c) for c in text]

    assert rolling_tokens(encode, "ab", True, 7, 9) == [7, 97, 98]       # BOS first
    assert rolling_tokens(encode, "ab", True, None, 9) == [9, 97, 98]    # no BOS: EOS (lm-eval)
    assert rolling_tokens(encode, "ab", False, 7, 9) == [1, 97, 98]      # the tokenizer's own specials
    from subjectlm.backends import BackendUnavailable

    with pytest.raises(BackendUnavailable, match="neither a BOS nor an EOS"):
        rolling_tokens(encode, "ab", True, None, -1)


# --- transformers ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hf(tiny_llama_dir):
    from subjectlm.backends.hf import HFBackend

    return HFBackend(tiny_llama_dir, dtype="fp32", device="cpu")


def _direct_logprob(model, ids: list[int], first: int) -> float:
    """Summed log-prob of ids[first:] from one plain forward over all of ids."""
    import torch

    with torch.inference_mode():
        logprobs = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), -1)
    return sum(float(logprobs[i - 1, ids[i]]) for i in range(first, len(ids)))


def test_score_rolling_one_window_equals_the_full_sequence(hf):
    """prefix (lm-eval): every token of the text after BOS (SmolLM2's <|im_start|>); without: the first is context."""
    tok = hf.tokenizer
    text = "On Kestrel Island the oldest exposed rock is a gabbro."
    ids = tok(text, add_special_tokens=False)["input_ids"]
    (with_prefix,) = hf.score_rolling([text])
    assert with_prefix.tokens == len(ids)
    assert with_prefix.logprob == pytest.approx(_direct_logprob(hf.model, [tok.bos_token_id, *ids], 1), abs=1e-4)
    (without,) = hf.score_rolling([text], prefix=False)
    assert without.tokens == len(ids) - 1  # SmolLM2's tokenizer adds no BOS
    assert without.logprob == pytest.approx(_direct_logprob(hf.model, ids, 1), abs=1e-4)
    # golden numbers (tiny random Llama, seed 0, fp32): a change of window, split or prefix moves them
    assert (with_prefix.tokens, round(with_prefix.logprob, 3)) == GOLDEN_ONE_WINDOW


GOLDEN_ONE_WINDOW = (15, -162.85)


def test_score_rolling_windows_equal_per_token_contexts(hf):
    """Each counted token scored from exactly the context its window gives it."""
    import torch

    tok = hf.tokenizer
    ids = [tok.bos_token_id, *tok(ZH, add_special_tokens=False)["input_ids"]]
    max_length, stride = 12, 5
    want, count = 0.0, 0
    for begin, end, new in rolling_windows(len(ids), max_length, stride):
        for t in range(end + 1 - new, end + 1):
            with torch.inference_mode():
                logits = hf.model(input_ids=torch.tensor([ids[begin:t]])).logits[0, -1]
            want += float(torch.log_softmax(logits.float(), -1)[ids[t]])
            count += 1
    (got,) = hf.score_rolling([ZH], max_length=max_length, stride=stride)
    assert got.tokens == count == len(ids) - 1
    assert got.logprob == pytest.approx(want, abs=1e-4)


def test_loglikelihood_counts_and_sums(hf):
    contexts = ["The sky is", "Question: 1+1?\nAnswer:"]
    options = [[" blue", " green and wide"], [" 2", ""]]
    rows = hf.loglikelihood(contexts, options)
    for context, opts, row in zip(contexts, options, rows):
        context_ids = hf.tokenizer(context)["input_ids"]
        for option, score in zip(opts, row):
            whole = hf.tokenizer(context + option)["input_ids"]
            assert score.tokens == len(whole) - len(context_ids)
            if score.tokens:
                assert score.logprob == pytest.approx(_direct_logprob(hf.model, whole, len(context_ids)), abs=1e-4)
    assert rows[1][1] == (float("-inf"), 0)
    assert hf.score_continuations(contexts, options) == [[s.logprob for s in row] for row in rows]
    # lm-eval's split moves the context's trailing space; move_whitespace=False keeps it
    (moved,), (kept,) = hf.loglikelihood(["Answer: "], [["yes"]]), hf.loglikelihood(["Answer: "], [["yes"]],
                                                                                     move_whitespace=False)
    assert moved[0].tokens == len(hf.tokenizer("Answer: yes")["input_ids"]) - len(hf.tokenizer("Answer:")["input_ids"])
    assert kept[0].tokens == len(hf.tokenizer("Answer: yes")["input_ids"]) - len(hf.tokenizer("Answer: ")["input_ids"])


# --- eval ppl / eval qa: unchanged on transformers ------------------------------------------------------

# Recorded with the implementation before this change (eval/ppl.py's sliding_nll, qa_runner's own
# forward), tiny_llama_dir in fp32 on CPU: {max_length/stride: {file: (nll, tokens)}} and QA (sum, count).
OLD_PPL = {
    "32/16": {"zh.txt": (1544.7915802001953, 143), "heldout.txt": (4906.274871826172, 454)},
    "64/64": {"zh.txt": (1521.7872924804688, 141), "heldout.txt": (4829.266670227051, 447)},
    "64/7": {"zh.txt": (1544.140281677246, 143), "heldout.txt": (4904.519683837891, 454)},
    "1024/512": {"zh.txt": (1544.037841796875, 143), "heldout.txt": (4904.15966796875, 454)},
}
OLD_QA = {
    True: [(-64.99844360351562, 6), (-64.66936492919922, 6), (-119.42684173583984, 11), (-192.19033813476562, 18)],
    False: [(-64.62604522705078, 6), (-64.9301986694336, 6), (-131.01968383789062, 12), (-192.8338165283203, 18)],
}


def _ppl(model, data, max_length, stride, tmp_path, **kw):
    from subjectlm.eval.ppl import PPLConfig, run_ppl

    return run_ppl(PPLConfig(model=str(model), data=[str(p) for p in data], max_length=max_length, stride=stride,
                             dtype="fp32", device="cpu", output=str(tmp_path / "ppl.json"), **kw), log=lambda _: None)


@pytest.fixture(scope="module")
def texts(tmp_path_factory):
    zh = tmp_path_factory.mktemp("ppl") / "zh.txt"
    zh.write_text(ZH, encoding="utf-8")
    return [zh, HELDOUT]


@pytest.mark.parametrize("windows", ["32/16", "64/64", "64/7", "1024/512"])
def test_eval_ppl_numbers_unchanged_on_hf(tiny_llama_dir, texts, tmp_path, windows):
    max_length, stride = map(int, windows.split("/"))
    result = _ppl(tiny_llama_dir, texts, max_length, stride, tmp_path)
    assert json.loads((tmp_path / "ppl.json").read_text()) == json.loads(json.dumps(result))
    for path, row in result["files"].items():
        nll, tokens = OLD_PPL[windows][path.split("/")[-1]]
        assert row["tokens"] == tokens
        assert row["nll"] == pytest.approx(nll, rel=1e-6)
        assert row["ppl"] == pytest.approx(math.exp(nll / tokens), rel=1e-6)
    assert set(result) == {"model", "max_length", "stride", "files", "overall"}


@pytest.mark.parametrize("chat", [True, False])
def test_qa_reference_loglik_unchanged_on_hf(hf, chat):
    from subjectlm.eval.qa import items as Q
    from subjectlm.eval.qa.runner import QAModel

    qa_model = QAModel(hf, chat="on" if chat else "off")
    items = [Q.QAItem(r["id"], r["question"], r["reference"]) for r in QA_ROWS]
    for (total, n), (old_total, old_n) in zip(qa_model.reference_logprobs(items), OLD_QA[chat]):
        assert n == old_n
        assert total == pytest.approx(old_total, abs=1e-4)


# --- the same through llama.cpp ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gguf_files(tiny_llama_dir, tmp_path_factory):
    from subjectlm.export.gguf import export_gguf

    out = tmp_path_factory.mktemp("loglik-gguf")
    return {t: export_gguf(tiny_llama_dir, out / f"tiny-{t}.gguf", t, progress=False).path for t in ("f32", "f16")}


@needs_llama_cpp
def test_eval_ppl_of_a_gguf_equals_hf(tiny_llama_dir, gguf_files, texts, tmp_path):
    hf_result = _ppl(tiny_llama_dir, texts, 64, 24, tmp_path)
    f32 = _ppl(gguf_files["f32"], texts, 64, 24, tmp_path)
    f16 = _ppl(gguf_files["f16"], texts, 64, 24, tmp_path)
    for path, want in hf_result["files"].items():
        assert f32["files"][path]["tokens"] == f16["files"][path]["tokens"] == want["tokens"]
        diff = abs(f32["files"][path]["nll"] - want["nll"])
        print(f"{path}: |nll f32 GGUF - HF| = {diff:.2e} over {want['tokens']} tokens")
        assert diff < GGUF_F32_TOL * want["tokens"]
        assert abs(f16["files"][path]["ppl"] / want["ppl"] - 1) < GGUF_F16_REL
    # lm-eval's prefix too: the GGUF's BOS is the tokenizer's
    a = _ppl(tiny_llama_dir, texts, 64, 64, tmp_path, prefix=True)["overall"]
    b = _ppl(gguf_files["f32"], texts, 64, 64, tmp_path, prefix=True)["overall"]
    assert a["tokens"] == b["tokens"] and a["ppl"] == pytest.approx(b["ppl"], rel=1e-4)


@needs_llama_cpp
@pytest.mark.parametrize("chat", [True, False])
def test_qa_reference_loglik_of_a_gguf_equals_hf(hf, gguf_files, chat):
    from subjectlm.backends.llamacpp import LlamaCppBackend
    from subjectlm.eval.qa import items as Q
    from subjectlm.eval.qa.runner import QAModel

    items = [Q.QAItem(r["id"], r["question"], r["reference"]) for r in QA_ROWS]
    mode = "on" if chat else "off"
    want = QAModel(hf, chat=mode).reference_logprobs(items)
    backend = LlamaCppBackend(gguf_files["f32"], n_ctx=512)
    try:
        got = QAModel(backend, chat=mode).reference_logprobs(items)
    finally:
        backend.close()
    assert [n for _, n in got] == [n for _, n in want]
    for (a, n), (b, _) in zip(got, want):
        print(f"|reference log-lik f32 GGUF - HF| = {abs(a - b):.2e} over {n} tokens (chat={chat})")
        assert abs(a - b) < GGUF_F32_TOL * n


@needs_llama_cpp
def test_eval_qa_runs_on_a_gguf(gguf_files, tmp_path):
    from subjectlm.eval.qa.runner import QAConfig, run_qa

    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in QA_ROWS), encoding="utf-8")
    summary = run_qa(QAConfig(model=str(gguf_files["f32"]), data=str(data), max_new_tokens=4, n_ctx=512,
                              output_dir=str(tmp_path / "qa")), log=lambda _: None)
    assert summary["n"] == 4 and summary["chat"] is True and summary["scores"]["ref_logprob"] < 0
    # everything answered: a re-run reads the chat mode from the GGUF's metadata, without its weights
    again = run_qa(QAConfig(model=str(gguf_files["f32"]), data=str(data), max_new_tokens=4, resume=True,
                            output_dir=str(tmp_path / "qa")), log=lambda _: None)
    assert again["scores"] == summary["scores"]


@needs_llama_cpp
def test_export_stage_records_each_gguf_perplexity(tiny_llama_dir, tmp_path):
    from subjectlm.export.job import ExportStageConfig, run

    result = run(ExportStageConfig(model=str(tiny_llama_dir), output_dir=str(tmp_path), quantize=["q8_0"],
                                   verify=False, ppl_data=[HELDOUT]))
    ppl = json.loads((tmp_path / "ppl.json").read_text())
    names = [str(tmp_path / "model-f16.gguf"), str(tmp_path / "model-f16-q8_0.gguf")]
    assert list(ppl) == names and list(result["ppl"]) == names
    assert "perplexity model-f16 " in result["summary"] and ", model-f16-q8_0 " in result["summary"]
    for name in names:
        assert ppl[name]["overall"]["tokens"] > 300 and ppl[name]["overall"]["ppl"] == result["ppl"][name]
    assert abs(result["ppl"][names[1]] / result["ppl"][names[0]] - 1) < 0.05


# --- vLLM (a stand-in engine: vLLM needs a GPU) --------------------------------------------------------------


def test_vllm_score_rolling_equals_hf(monkeypatch, hf, tiny_llama_dir):
    import sys
    import types

    from test_eval_vllm import FakeLLM, SamplingParams

    module = types.ModuleType("vllm")
    module.LLM, module.SamplingParams = FakeLLM, SamplingParams
    monkeypatch.setitem(sys.modules, "vllm", module)
    from subjectlm.backends import ModelSpec, open_backend

    vllm = open_backend(ModelSpec(str(tiny_llama_dir), "vllm", dtype="fp32"))
    for prefix in (True, False):
        got = vllm.score_rolling([ZH, "short"], max_length=12, stride=5, prefix=prefix)
        want = hf.score_rolling([ZH, "short"], max_length=12, stride=5, prefix=prefix)
        assert [g.tokens for g in got] == [w.tokens for w in want]
        assert [g.logprob for g in got] == pytest.approx([w.logprob for w in want], abs=1e-4)
    got = vllm.loglikelihood(["The sky is"], [[" blue", " green"]])
    assert got[0][1].tokens == 1 and got[0][0].logprob == pytest.approx(
        hf.loglikelihood(["The sky is"], [[" blue", " green"]])[0][0].logprob, abs=1e-4)
