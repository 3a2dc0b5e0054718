"""`subjectlm eval ppl`: held-out perplexity per file, with a sliding window.

A text longer than the window is scored in windows of `max_length` tokens that
start every `stride` tokens; each token is predicted once, in the first window
where it is new, with up to max_length − stride tokens of context before it
(with stride == max_length the windows do not overlap and each window's first
token, having no context, is not scored).
Perplexity = exp(total negative log-likelihood / predicted tokens); the first
token of a file has no context and is not predicted.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Callable

from subjectlm.config import ConfigError, check_options, option
from subjectlm.io import read_jsonl
from subjectlm.models import DTYPE_CHOICES


@dataclasses.dataclass
class PPLConfig:
    model: str = option("default", help="model directory or `default`", aliases=("--model_name_or_path",))
    data: list[str] = option([], help="text files: .txt (whole file) or .jsonl/.json (the `text` field of each record)")
    max_length: int = option(1024, help="window length in tokens", min=2)
    stride: int = option(512, help="tokens between window starts (= tokens newly scored per window)")
    dtype: str = option("auto", help="weights dtype", choices=DTYPE_CHOICES)
    device: str | None = option(None, help="cpu, cuda, ... (default: cuda if available)")
    output: str | None = option(None, help="also write the results to this JSON file")
    trust_remote_code: bool = option(False, help="allow model code from the model directory")

    def __post_init__(self):
        check_options(self)
        if not self.data:
            raise ConfigError("data: give at least one text file")
        if not 1 <= self.stride <= self.max_length:
            raise ConfigError(f"stride: must be between 1 and max_length ({self.max_length}), got {self.stride}")


def read_text(path: str | Path) -> str:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"data: {path}: file not found")
    if path.suffix == ".jsonl":
        rows = read_jsonl(path)  # a bad line is an error naming file:line
    elif path.suffix == ".json":
        rows = json.loads(path.read_text(encoding="utf-8"))
    else:
        return path.read_text(encoding="utf-8")
    texts = [r["text"] if isinstance(r, dict) else str(r) for r in rows]
    return "\n\n".join(t for t in texts if t)


def sliding_nll(model, ids: list[int], max_length: int, stride: int) -> tuple[float, int]:
    """Total negative log-likelihood (nats) of ids[1:], and how many tokens that is."""
    import torch

    device = next(model.parameters()).device
    total, count, prev_end = 0.0, 0, 0
    for begin in range(0, max(len(ids) - 1, 1), stride):
        end = min(begin + max_length, len(ids))
        # Targets not scored by an earlier window; a window's first token has no context in it.
        new = min(end - max(prev_end, 1), end - begin - 1)
        window = torch.tensor([ids[begin:end]], device=device)
        with torch.inference_mode():
            logits = model(input_ids=window).logits[0, :-1].float()
        targets = window[0, 1:]
        nll = torch.nn.functional.cross_entropy(logits[-new:], targets[-new:], reduction="sum")
        total += float(nll)
        count += new
        prev_end = end
        if end == len(ids):
            break
    return total, count


def run_ppl(config: PPLConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    from subjectlm.backends.device import default_device
    from subjectlm.io import write_json
    from subjectlm.models import load_model, load_tokenizer

    texts = {path: read_text(path) for path in config.data}
    device = config.device or default_device()
    tokenizer = load_tokenizer(config.model, trust_remote_code=config.trust_remote_code)
    model = load_model(config.model, dtype=config.dtype, device=device, trust_remote_code=config.trust_remote_code)
    files, total_nll, total_tokens = {}, 0.0, 0
    for path, text in texts.items():
        ids = list(tokenizer(text)["input_ids"])
        if len(ids) < 2:
            log(f"{path}: fewer than 2 tokens: skipped")
            continue
        nll, n = sliding_nll(model, ids, config.max_length, config.stride)
        files[path] = {"tokens": n, "nll": nll, "ppl": math.exp(nll / n)}
        total_nll, total_tokens = total_nll + nll, total_tokens + n
        log(f"{path}: perplexity {files[path]['ppl']:.3f} over {n} tokens")
    result = {"model": config.model, "max_length": config.max_length, "stride": config.stride, "files": files,
              "overall": {"tokens": total_tokens,
                          "ppl": math.exp(total_nll / total_tokens) if total_tokens else None}}
    if config.output:
        write_json(config.output, result)
    return result
