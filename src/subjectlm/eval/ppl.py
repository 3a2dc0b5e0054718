"""`subjectlm eval ppl`: held-out perplexity per file, with a sliding window, on any backend
(a model directory on transformers, a .gguf on llama.cpp: the same numbers within rounding).

A text longer than the window is scored in windows of `max_length` tokens that
start every `stride` tokens; each token is predicted once, in the first window
where it is new, with at least max_length − stride tokens of context before it
(with stride == max_length the windows do not overlap and each window's first
token, having no context, is not scored).
Perplexity = exp(total negative log-likelihood / predicted tokens); the first
token of a file (the tokenizer's BOS when it adds one) has no context and is not
predicted, unless `--prefix` puts the model's BOS (else EOS) before the text as
lm-eval's loglikelihood_rolling does, so the text's first token is predicted too.

The scoring is the backends' `score_rolling` (backends/score_rolling.py defines its windows
exactly); a window here of max_length tokens is its window of max_length − 1 tokens read
plus the one they predict.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from subjectlm.backends.score_rolling import perplexity_of_files, read_text
from subjectlm.backends.spec import (
    OpensModel,
    backend_option,
    device_option,
    dtype_option,
    model_option,
    trust_remote_code_option,
)
from subjectlm.config import ConfigError, check_options, option

__all__ = ["PPLConfig", "read_text", "run_ppl"]


@dataclasses.dataclass
class PPLConfig(OpensModel):
    model: str = model_option()
    backend: str = backend_option()
    data: list[str] = option([], help="text files: .txt (whole file) or .jsonl/.json (the `text` field of each record)")
    max_length: int = option(1024, help="window length in tokens", min=2)
    stride: int = option(512, help="tokens between window starts (= tokens newly scored per window)")
    dtype: str = dtype_option()
    device: str | None = device_option()
    prefix: bool = option(False, help="also predict each file's first token, after the model's BOS (EOS without "
                                      "one), as lm-eval's loglikelihood_rolling does (the same numbers as without "
                                      "for a tokenizer that adds a BOS itself)")
    output: str | None = option(None, help="also write the results to this JSON file")
    trust_remote_code: bool = trust_remote_code_option()

    def __post_init__(self):
        check_options(self)
        if not self.data:
            raise ConfigError("data: give at least one text file")
        if not 1 <= self.stride <= self.max_length:
            raise ConfigError(f"stride: must be between 1 and max_length ({self.max_length}), got {self.stride}")


def run_ppl(config: PPLConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    from subjectlm.backends import open_backend
    from subjectlm.io import write_json

    for path in config.data:
        read_text(path)  # a missing or malformed file fails before the model loads
    # Windows of max_length tokens, the last only predicted: the model reads max_length - 1 of them.
    backend = open_backend(config.model_spec(n_ctx=config.max_length))
    try:
        scored = perplexity_of_files(backend, config.data, config.max_length - 1, config.stride, config.prefix, log)
    finally:
        backend.close()
    result = {"model": config.model, "max_length": config.max_length, "stride": config.stride, **scored}
    if config.output:
        write_json(config.output, result)
    return result
