"""The vLLM exam backend's glue, driven through a stand-in engine (vLLM itself needs a GPU: untested here).

The stand-in follows vLLM's documented semantics on top of transformers: `allowed_token_ids` limits
what is sampled, and the returned log-prob is the raw one (logprobs_mode "raw_logprobs"). The test
shows the backend turns those one-token requests into the same letter log-probs as HFBackend.
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field

import pytest
import torch

from subjectlm.backends import BackendUnavailable, GenParams, ModelSpec, open_backend
from subjectlm.backends.hf import HFBackend


@dataclass
class SamplingParams:
    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    stop: list[str] | None = None
    seed: int | None = None
    logprobs: int | None = None
    allowed_token_ids: list[int] | None = None
    prompt_logprobs: int | None = None


@dataclass
class _Logprob:
    logprob: float


@dataclass
class _Completion:
    text: str = ""
    logprobs: list = field(default_factory=list)
    token_ids: list = field(default_factory=list)
    finish_reason: str = "length"


@dataclass
class _Output:
    outputs: list
    prompt_logprobs: list | None = None
    prompt_token_ids: list = field(default_factory=list)


class FakeLLM:
    def __init__(self, model: str, dtype="auto", seed=0, trust_remote_code=False, enable_prefix_caching=True):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
        self.tokenizer = AutoTokenizer.from_pretrained(model)

    def get_tokenizer(self):
        return self.tokenizer

    def generate(self, requests, params, use_tqdm=True):
        params = params if isinstance(params, list) else [params] * len(requests)
        outs = []
        for request, p in zip(requests, params):
            if isinstance(request, str):  # a text prompt (the generation side): vLLM tokenizes it
                request = {"prompt_token_ids": self.tokenizer(request)["input_ids"]}
            ids = torch.tensor([request["prompt_token_ids"]])
            with torch.inference_mode():
                if p.prompt_logprobs is not None:  # vLLM: each prompt token's raw log-prob, None at position 0
                    raw = torch.log_softmax(self.model(input_ids=ids).logits[0].float(), -1)
                    tokens = request["prompt_token_ids"]
                    steps = [None] + [{t: _Logprob(float(raw[i, t]))} for i, t in enumerate(tokens[1:])]
                    outs.append(_Output([_Completion()], prompt_logprobs=steps))
                elif p.max_tokens == 1:
                    raw = torch.log_softmax(self.model(input_ids=ids).logits[0, -1].float(), -1)
                    allowed = p.allowed_token_ids or list(range(raw.shape[0]))
                    token = max(allowed, key=lambda t: raw[t])
                    outs.append(_Output([_Completion(logprobs=[{token: _Logprob(float(raw[token]))}])]))
                else:
                    new = self.model.generate(ids, max_new_tokens=p.max_tokens, do_sample=False)[0, ids.shape[1]:]
                    outs.append(_Output([_Completion(text=self.tokenizer.decode(new), token_ids=new.tolist())],
                                        prompt_token_ids=request["prompt_token_ids"]))
        return outs


@pytest.fixture
def fake_vllm(monkeypatch):
    module = types.ModuleType("vllm")
    module.LLM, module.SamplingParams = FakeLLM, SamplingParams
    monkeypatch.setitem(sys.modules, "vllm", module)
    return module


def test_vllm_letter_logprobs_equal_the_hf_backend(fake_vllm, tiny_llama_dir):
    prompts = [f"问题{i}：1+{i}=?\nA. {i}\nB. {i + 1}\nC. {i + 2}\nD. {i + 3}\n答案：" for i in range(5)]
    letters = ["A", "B", "C", "D"]
    got = open_backend(ModelSpec(str(tiny_llama_dir), "vllm", dtype="fp32", batch_size=8)).score_next(prompts, letters)
    want = HFBackend(str(tiny_llama_dir), dtype="fp32", device="cpu").score_next(prompts, letters)
    assert len(got) == 5 and all(len(row) == 4 for row in got)
    assert max(abs(a - b) for g, w in zip(got, want) for a, b in zip(g, w)) <= 1e-4


def test_vllm_cloze_logprobs_equal_the_hf_backend(fake_vllm, tiny_llama_dir):
    from subjectlm.eval.exam import prompts as P

    s = P.style("ceval")
    shot = P.ExamDoc("x", "0", "中国的首都是____", ("上海", "北京", "广州", "深圳"), "B")
    docs = [P.ExamDoc("x", str(i), f"1+{i}=____", (str(i), str(i + 1), f"{i}加一", "不知道"), "B") for i in range(3)]
    contexts = [P.cloze_prompt(s, "算术", [shot], d) for d in docs]
    options = [P.cloze_continuations(s, d) for d in docs]
    got = open_backend(ModelSpec(str(tiny_llama_dir), "vllm", dtype="fp32")).score_continuations(contexts, options)
    want = HFBackend(str(tiny_llama_dir), dtype="fp32", device="cpu").score_continuations(contexts, options)
    assert len(got) == 3 and all(len(row) == 4 for row in got)
    assert max(abs(a - b) for g, w in zip(got, want) for a, b in zip(g, w)) <= 1e-4


def test_vllm_generate_returns_one_reply_per_prompt(fake_vllm, tiny_llama_dir):
    backend = open_backend(ModelSpec(str(tiny_llama_dir), "vllm"))
    answers = backend.generate(["a", "b"], GenParams(max_tokens=3))
    assert len(answers) == 2 and all(a.completion_tokens == 3 and a.finish_reason == "length" for a in answers)


def test_missing_vllm_is_a_clear_error(monkeypatch, tiny_llama_dir):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    with pytest.raises(BackendUnavailable, match="pip install 'subjectlm\\[vllm\\]'"):
        open_backend(ModelSpec(str(tiny_llama_dir), "vllm"))
