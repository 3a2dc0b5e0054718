"""--verify: the merged model must compute what base + adapters compute in peft.

The reference applies the adapters with peft as they were trained (all but the last
merged by peft, the last one live), both models run in float32 on a few prompts, and
the report gives the largest absolute logit difference and how often the top-1 token
agrees. A difference over the tolerance is an error (the output is then not kept).
"""

from __future__ import annotations

import math
from pathlib import Path

from subjectlm.merge.adapter import Adapter
from subjectlm.merge.errors import MergeError
from subjectlm.merge.plan import INPUT_EMBEDDING_SUFFIXES

PROMPTS = (
    "The capital of France is",
    "Question: what is 12 times 7?\nAnswer:",
    "光合作用的主要产物是",
    "def fibonacci(n):",
)
# Default tolerance by the merged weights' dtype: rounding the weights moves logits this much.
TOLERANCE = {"float32": 1e-3, "float16": 5e-2, "bfloat16": 0.25}


def _resized_vocab(adapter: Adapter) -> int | None:
    for name, ops in adapter.ops.items():
        if name.endswith(INPUT_EMBEDDING_SUFFIXES) and ops[-1].kind == "replace":
            return ops[-1].b.shape[0]
    return None


def _reference(base: Path, adapters: list[Adapter]):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from subjectlm.models import peft_without_renamed_attribute_warning

    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    for i, adapter in enumerate(adapters):
        rows = _resized_vocab(adapter)
        if rows and rows != model.get_input_embeddings().weight.shape[0]:
            model.resize_token_embeddings(rows)
        with peft_without_renamed_attribute_warning():
            model = PeftModel.from_pretrained(model, str(adapter.path))
        if i < len(adapters) - 1:
            model = model.merge_and_unload()
    return model.eval()


def _prompt_ids(merged: Path, vocab: int) -> list[list[int]]:
    try:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(merged))
        ids = [tokenizer(p)["input_ids"] for p in PROMPTS]
        if all(ids) and max(max(x) for x in ids) < vocab:
            return ids
    except Exception:  # no usable tokenizer: fixed token ids still compare the weights
        pass
    return [[(7 * i + 13 * j) % vocab for j in range(12)] for i in range(len(PROMPTS))]


def verify_merge(base: Path, adapters: list[Adapter], merged: Path, tolerance: float | None = None) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    with torch.no_grad():
        merged_model = AutoModelForCausalLM.from_pretrained(str(merged), dtype="auto")
        dtype = str(next(merged_model.parameters()).dtype).removeprefix("torch.")
        merged_model = merged_model.float().eval()
        reference = _reference(base, adapters)
        vocab = merged_model.get_input_embeddings().weight.shape[0]
        worst, agree, total = 0.0, 0, 0
        for ids in _prompt_ids(merged, vocab):
            x = torch.tensor([ids])
            got, want = merged_model(input_ids=x).logits[0], reference(input_ids=x).logits[0]
            worst = max(worst, (got - want).abs().max().item())
            agree += int((got.argmax(-1) == want.argmax(-1)).sum())
            total += len(ids)
    tolerance = tolerance if tolerance is not None else TOLERANCE.get(dtype, 1e-3)
    report = {"max_abs_diff": worst, "top1_agreement": agree / total, "positions": total,
              "dtype": dtype, "tolerance": tolerance}
    if not math.isfinite(worst) or worst > tolerance:
        raise MergeError(f"verification failed: max abs logit difference {worst:.3g} > tolerance {tolerance:g} "
                         f"(top-1 agreement {agree / total:.3f}); the merged model was not written")
    return report
