"""vLLM's offline engine (GPU machines): batched `generate`; `stream` gives one piece per answer;
scores from score_vllm.VLLMScorer over the same engine."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Iterator, Sequence

from subjectlm.backends import Answer, GenParams, Piece, Prompt, Scores, per_prompt


class VLLMBackend(Scores):
    name = "vllm"

    def __init__(self, model: str | Path, dtype: str = "auto", trust_remote_code: bool = False):
        from subjectlm.backends import BackendUnavailable
        from subjectlm.models import dtype_name, resolve_model

        try:
            import vllm
        except ImportError as exc:
            raise BackendUnavailable("the vllm backend needs vLLM, which runs on Linux with an NVIDIA GPU: "
                            "pip install 'subjectlm[vllm]'; on CPU use --backend hf or llamacpp") from exc
        self.vllm = vllm
        self.model_id = Path(str(model)).name
        # Prefix caching: the questions of a subject (and a question's letter requests) share their shots' blocks.
        self.llm = vllm.LLM(model=str(resolve_model(model)), dtype=dtype_name(dtype), seed=0,
                            trust_remote_code=trust_remote_code, enable_prefix_caching=True)
        self.lock = threading.Lock()

    def close(self) -> None:
        pass

    def open_scorer(self):
        from subjectlm.backends.score_vllm import VLLMScorer

        return VLLMScorer(self.vllm, self.llm)

    def _sampling(self, params: GenParams):
        return self.vllm.SamplingParams(max_tokens=params.max_tokens, temperature=params.temperature,
                                        top_p=params.top_p, stop=params.stop or None, seed=params.seed)

    def _run(self, prompts: Sequence[Prompt], rows: list[GenParams]):
        """vLLM's outputs in prompt order: raw prompts and conversations go to generate() and chat()."""
        outputs: list = [None] * len(prompts)
        for is_chat in (False, True):
            index = [i for i, p in enumerate(prompts) if isinstance(p, str) != is_chat]
            if not index:
                continue
            sampling = [self._sampling(rows[i]) for i in index]
            if is_chat:
                got = self.llm.chat([[dict(m) for m in prompts[i]] for i in index], sampling, use_tqdm=False)
            else:
                got = self.llm.generate([prompts[i] for i in index], sampling, use_tqdm=False)
            for i, out in zip(index, got):
                outputs[i] = out
        return outputs

    def generate(self, prompts: Sequence[Prompt], params: GenParams | Sequence[GenParams]) -> list[Answer]:
        with self.lock:
            outputs = self._run(prompts, per_prompt(params, len(prompts)))
        answers = []
        for request in outputs:
            out = request.outputs[0]
            answers.append(Answer(out.text, "length" if out.finish_reason == "length" else "stop",
                                  len(request.prompt_token_ids), len(out.token_ids)))
        return answers

    def stream(self, prompt: Prompt, params: GenParams, cancel: threading.Event | None = None) -> Iterator[Piece]:
        if cancel is not None and cancel.is_set():
            yield Piece("", "cancelled")
            return
        answer = self.generate([prompt], params)[0]
        yield Piece(answer.text)
        yield Piece("", answer.finish_reason, answer.prompt_tokens, answer.completion_tokens)
