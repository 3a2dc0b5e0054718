"""Windowed log-likelihood of whole texts (lm-eval's `loglikelihood_rolling`), shared by every scorer.

No torch here (the GGUF path imports this): the tokens a text is scored as, the windows it is read in,
and the perplexity of text files through any backend's `score_rolling`. The forwards live in
score_hf.py and score_llamacpp.py (vLLM: score_vllm.py).

Tokens (`rolling_tokens`). With `prefix` (the default, as lm-eval): the text tokenized without
special tokens, after one prefix token, the model's BOS, or EOS when it has no BOS (lm-eval's
`prefix_token_id`), so every token of the text is predicted and counted. Without `prefix`: the text
as the tokenizer writes it with its special tokens (a BOS when the tokenizer adds one), whose first
token is context only and not counted. For tokenizers that add a BOS (Llama, Gemma, ...) the two are
the same; for those that add none (SmolLM2, Qwen) `prefix=False` leaves the text's first token
unscored, which is what `eval ppl` has always reported.

Windows (`rolling_windows`): call the tokens seq[0..n-1]; seq[0] is never a target. A window reads at
most `max_length` tokens, seq[b:e] with e = min(b + max_length, n - 1), and predicts seq[b+1 .. e];
window k starts at b = k * stride. Each target is counted once, in the first window that predicts
it, so a window counts the last e - max(b, previous e) of its predictions; the windows stop at the
one that predicts seq[n-1]. With stride == max_length (the default) the windows are lm-eval's:
each predicts max_length new tokens, its first one from the single token before it (the previous
window's last), except that lm-eval moves its *last* window left to read a full max_length tokens
(here it starts at its stride step; the same whenever the text fits one window). A smaller stride
gives each newly counted token at least max_length - stride + 1 tokens of context. stride ==
max_length + 1 is allowed: the token at each later window's start is then read but never
predicted (what `eval ppl --stride` equal to its `--max_length` has always done).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Sequence

from subjectlm.backends.score_tokens import Encode


def rolling_tokens(encode: Encode, text: str, prefix: bool, bos_id: int | None, eos_id: int | None) -> list[int]:
    """The tokens a text is scored as (see the module docstring): with `prefix`, BOS (else EOS) then
    the text without special tokens; without, the text with the tokenizer's own special tokens."""
    if not prefix:
        return list(encode(text, add_special_tokens=True))
    first = bos_id if bos_id is not None and bos_id >= 0 else eos_id
    if first is None or first < 0:
        from subjectlm.backends import BackendUnavailable

        raise BackendUnavailable("this model has neither a BOS nor an EOS token to score a text's first token "
                                 "after: score with prefix=False (`eval ppl` without --prefix)")
    return [first, *encode(text, add_special_tokens=False)]


def rolling_windows(n: int, max_length: int, stride: int) -> list[tuple[int, int, int]]:
    """(begin, end, new) per window over n tokens: the model reads tokens[begin:end], which predict
    tokens[begin+1 .. end], and the last `new` of those predictions are counted (module docstring)."""
    if max_length < 1:
        raise ValueError(f"max_length must be at least 1, got {max_length}")
    if not 1 <= stride <= max_length + 1:
        raise ValueError(f"stride must be between 1 and max_length + 1 ({max_length + 1}), got {stride}")
    windows, last = [], 0
    for begin in range(0, n - 1, stride):
        end = min(begin + max_length, n - 1)
        windows.append((begin, end, end - max(last, begin)))
        last = end
        if end == n - 1:
            break
    return windows


def window_settings(max_length: int | None, stride: int | None, context: int) -> tuple[int, int]:
    """The defaults: windows as long as the model's context, one after the other (stride = max_length)."""
    length = max_length or context
    return length, stride or length


def read_text(path: str | Path) -> str:
    """A held-out text file: .txt whole; .jsonl/.json the `text` field of each record, joined by blank lines."""
    import json

    from subjectlm.config import ConfigError
    from subjectlm.io import read_jsonl

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


def perplexity_of_files(backend, paths: Sequence[str | Path], max_length: int | None, stride: int | None,
                        prefix: bool = True, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Perplexity of each text file and of all together, through `backend.score_rolling`:
    {"files": {path: {"tokens", "nll", "ppl"}}, "overall": {"tokens", "ppl"}}. A file with no token to
    predict is reported through `log` and left out (not counted)."""
    from tqdm.auto import tqdm

    texts = {str(path): read_text(path) for path in paths}
    files, total_nll, total_tokens = {}, 0.0, 0
    for path, text in tqdm(texts.items(), desc="perplexity", unit="file", disable=len(texts) < 2):
        logprob, n = backend.score_rolling([text], max_length, stride, prefix)[0]
        if n == 0:
            log(f"{path}: no token to predict: skipped")
            continue
        files[path] = {"tokens": n, "nll": -logprob, "ppl": math.exp(-logprob / n)}
        total_nll, total_tokens = total_nll - logprob, total_tokens + n
        log(f"{path}: perplexity {files[path]['ppl']:.3f} over {n} tokens")
    return {"files": files, "overall": {"tokens": total_tokens,
                                        "ppl": math.exp(total_nll / total_tokens) if total_tokens else None}}
