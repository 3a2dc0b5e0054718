"""Cross-entropy at label positions without ever holding their whole logits.

Label positions x vocabulary is the largest tensor of a LoRA step on a small model: ~1,250 answer
tokens x 49,152 tokens of SmolLM2's vocabulary is 250 MB in fp32, and autograd keeps it three times
over (logits, log-softmax, their gradient). With the output head frozen (LoRA) the gradient of the
loss with respect to the hidden states is known as soon as a chunk's softmax is: (softmax - onehot) @ W.
So `chunked_cross_entropy` walks the rows in chunks, computes each chunk's loss and that gradient in
the forward pass, and keeps only the gradient ([N, hidden], small); backward just scales it. The
matmuls are the ones a plain cross-entropy does (logits forward, hidden gradient backward), nothing is
recomputed, and memory holds one chunk of logits at a time.

`hidden_instead_of_logits` makes the model's forward return the final hidden states (its head
swapped for an identity while the forward runs), so the head is applied here, chunk by chunk.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch

from subjectlm.train.tokenize import IGNORE

# Logits per chunk: 30 MiB in fp32, just below glibc's 32 MiB mmap ceiling, so the chunk's memory is reused in
# place rather than mapped afresh each time; at SmolLM2's 49,152-token vocabulary that is 160 rows, whose head
# matmuls ran ~15% faster than 85 rows' (16 MiB) in a side-by-side run of 750 label rows.
CHUNK_ELEMENTS = 30 * 1024 * 1024 // 4


class _ChunkedCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        rows = max(1, CHUNK_ELEMENTS // weight.shape[0])
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grad = torch.zeros_like(hidden) if hidden.requires_grad else None
        for start in range(0, hidden.shape[0], rows):
            h, t = hidden[start:start + rows], targets[start:start + rows]
            valid = t != IGNORE
            if not valid.any():
                continue
            logits = (h @ weight.t()).float()
            lse = torch.logsumexp(logits, dim=-1)
            safe = t.clamp(min=0)
            picked = logits.gather(1, safe.unsqueeze(1)).squeeze(1)
            total += ((lse - picked) * valid).sum()
            if grad is not None:
                probs = logits.sub_(lse.unsqueeze(1)).exp_()  # softmax, in the logits' memory
                probs[torch.arange(len(t), device=t.device), safe] -= 1.0
                probs *= valid.unsqueeze(1)
                grad[start:start + rows] = (probs.to(weight.dtype) @ weight).to(hidden.dtype)
        ctx.save_for_backward(grad if grad is not None else hidden.new_empty(0))
        return total

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        (grad,) = ctx.saved_tensors
        return grad * grad_output.to(grad.dtype), None, None


def chunked_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Sum over rows of -log softmax(hidden @ weight.T)[target]; rows with target -100 add nothing.
    hidden [N, d], weight [V, d] (frozen: no gradient flows to it), targets [N]."""
    if weight.requires_grad:
        raise ValueError("chunked_cross_entropy: the output head must be frozen (its gradient is not computed)")
    return _ChunkedCrossEntropy.apply(hidden, weight, targets)


def frozen_linear_head(model: Any) -> Any | None:
    """The causal LM under any peft wrapper, if its head is a plain frozen bias-free Linear (LoRA's usual case);
    None otherwise (a trained head, modules_to_save, a head with bias): then the ordinary loss path is used."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    get = getattr(inner, "get_output_embeddings", None)
    head = get() if get else None
    if type(head) is not torch.nn.Linear or head.bias is not None or head.weight.requires_grad:
        return None
    return inner


@contextmanager
def hidden_instead_of_logits(causal_lm: Any) -> Iterator[torch.Tensor]:
    """While inside, the model's forward returns its final hidden states as `logits`; yields the head weight."""
    head = causal_lm.get_output_embeddings()
    causal_lm.set_output_embeddings(torch.nn.Identity())
    try:
        yield head.weight
    finally:
        causal_lm.set_output_embeddings(head)
