"""Does the GGUF compute what the HF model computes? Compare them on the same tokens.

Both models score one token sequence (held-out text; SAMPLE_TEXT by default). Per
position we compare the next-token distributions: KL(P_hf || P_gguf), whether the argmax
agrees, and each model's perplexity on the actual next tokens. An f16 export should show
KL near 1e-5 and ~100% top-1 agreement; a quantization's numbers show what it costs.
We also check that llama.cpp tokenizes the text exactly as transformers does (the
pre-tokenizer is the usual place where an export goes wrong).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from subjectlm.backends.llamacpp import open_llama  # one way to open llama.cpp, shared with chat and serve

# Written for this project (no outside source): mixed English and Chinese prose of the
# kind our subject models see, with numbers and punctuation to exercise the tokenizer.
SAMPLE_TEXT = """\
The water cycle moves water between the oceans, the air and the land. Sunlight warms the sea, \
and some of the water evaporates; the vapour rises, cools and condenses into clouds. When the \
droplets grow heavy they fall as rain or snow. About 71% of the Earth's surface is covered by \
water, yet less than 3% of all water is fresh, and most of that is frozen in glaciers.

In 1687 Isaac Newton published three laws of motion. The second law says that the net force on \
a body equals its mass times its acceleration, F = m * a. A 2 kg cart pushed with 10 N therefore \
accelerates at 5 m/s^2, ignoring friction.

光合作用是绿色植物利用光能，把二氧化碳和水转化为有机物并释放氧气的过程。这个过程主要在叶绿体中进行，\
分为光反应和暗反应两个阶段。光反应产生ATP和NADPH，暗反应则利用它们固定二氧化碳。

中国古代的四大发明是造纸术、指南针、火药和印刷术。它们对世界文明的发展产生了深远的影响。

def mean(values):
    \"\"\"Average of a non-empty list.\"\"\"
    return sum(values) / len(values)

Question: which gas do plants release during photosynthesis? Answer: oxygen (O2).
"""


@dataclasses.dataclass
class VerifyRow:
    name: str            # the GGUF file (or "hf" for the reference)
    n_tokens: int        # positions compared
    mean_kld: float      # mean over positions of KL(P_hf || P_gguf), nats
    top1: float          # fraction of positions where both argmaxes agree
    ppl_hf: float
    ppl_gguf: float
    tokens_match: bool | None  # llama.cpp tokenizes the text as transformers does


def compare_logits(hf_logits, gguf_logits, token_ids) -> tuple[float, float, float, float]:
    """(mean KL, top-1 agreement, perplexity hf, perplexity gguf) of two [n, vocab] logit arrays."""
    import torch

    n = min(hf_logits.shape[1], gguf_logits.shape[1])  # a padded GGUF vocab has extra unused columns
    hf = torch.as_tensor(hf_logits[:, :n], dtype=torch.float64)
    gg = torch.as_tensor(gguf_logits[:, :n], dtype=torch.float64)
    lp_hf = torch.log_softmax(hf, dim=1)
    lp_gg = torch.log_softmax(gg, dim=1)
    kld = (lp_hf.exp() * (lp_hf - lp_gg)).sum(dim=1)
    top1 = (hf.argmax(dim=1) == gg.argmax(dim=1)).double().mean()
    targets = torch.as_tensor(token_ids[1:1 + hf.shape[0]]).unsqueeze(1)
    ppl_hf = lp_hf.gather(1, targets).mean().neg().exp()
    ppl_gg = lp_gg.gather(1, targets).mean().neg().exp()
    return float(kld.mean()), float(top1), float(ppl_hf), float(ppl_gg)


def hf_logits(model_dir: Path, token_ids: list[int], adapter: str | Path | None = None):
    """[n, vocab] float32 logits of the HF model (fp32, with a LoRA adapter merged in) for every position."""
    import torch

    from subjectlm.models import load_model, peft_without_renamed_attribute_warning

    model = load_model(model_dir, dtype="fp32")
    if adapter is not None:
        from peft import PeftModel

        with peft_without_renamed_attribute_warning():
            model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    with torch.no_grad():
        out = model(torch.tensor([token_ids])).logits[0]
    return out.float().numpy()


def gguf_logits(path: Path, token_ids: list[int], lora: str | Path | None = None):
    """[n, vocab] logits llama.cpp computes for the same tokens (and the open model)."""
    import llama_cpp
    import numpy as np

    # An f32 KV cache (llama.cpp's default is f16): the comparison then measures the weights' type, not
    # the cache's rounding, and an f32 export can be held to ~1e-7 mean KL.
    llm = open_llama(path, n_ctx=max(64, len(token_ids)), logits_all=True, lora=lora,
                     type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32)
    try:
        llm.eval(token_ids)
        return np.array(llm.scores[: len(token_ids)], dtype=np.float32), llm
    except BaseException:
        llm.close()
        raise


def verify(model: str | Path, ggufs: list[str | Path], text: str | None = None, max_tokens: int = 512,
           adapter: str | Path | None = None, lora_gguf: str | Path | None = None) -> list[VerifyRow]:
    """One row per GGUF: how closely it follows the HF model on `text`. With `adapter` (a PEFT
    directory) and `lora_gguf` (its GGUF export), the reference is the merged model and each
    GGUF runs with the GGUF adapter applied."""
    from subjectlm.models import load_tokenizer, resolve_model

    model_dir = resolve_model(model)
    tokenizer = load_tokenizer(model_dir)
    text = text or SAMPLE_TEXT
    token_ids = tokenizer(text, add_special_tokens=True)["input_ids"][:max_tokens]
    bare_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    reference = hf_logits(model_dir, token_ids, adapter)
    rows = []
    for path in ggufs:
        logits, llm = gguf_logits(Path(path), token_ids, lora_gguf)
        try:
            tokens_match = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False) == bare_ids
        finally:
            llm.close()
        kld, top1, ppl_hf, ppl_gg = compare_logits(reference[:-1], logits[:-1], token_ids)
        rows.append(VerifyRow(str(path), len(token_ids) - 1, kld, top1, ppl_hf, ppl_gg, tokens_match))
    return rows


def format_table(rows: list[VerifyRow]) -> str:
    header = f"{'gguf':<40} {'tokens':>6} {'mean KLD':>10} {'top-1':>7} {'ppl hf':>9} {'ppl gguf':>9} {'tokenizer':>9}"
    lines = [header, "-" * len(header)]
    for r in rows:
        name = r.name if len(r.name) <= 40 else "..." + r.name[-37:]
        match = "same" if r.tokens_match else ("DIFFERS" if r.tokens_match is False else "-")
        lines.append(f"{name:<40} {r.n_tokens:>6} {r.mean_kld:>10.2e} {r.top1:>6.1%} {r.ppl_hf:>9.3f} "
                     f"{r.ppl_gguf:>9.3f} {match:>9}")
    return "\n".join(lines)
