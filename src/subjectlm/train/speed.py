"""A LoRA projection in one autograd node: base matmul, dropout, rank-r products and their sum.

peft's LoRA Linear runs `base(x) + lora_B(lora_A(dropout(x))) * scaling` as five autograd nodes, each
with its own full-size temporaries: the dropped-out copy of x, the scaled [T, out] LoRA output and the
sum. `fused_lora_linear` computes the same thing with the LoRA product added onto the base matmul's
output by one `addmm` (alpha = scaling), and a hand-written backward that knows the base weight
is frozen: grad_x = g @ W + scaling * ((g @ B) @ A) * mask / (1 - p), grad_B = scaling * g.T @ u,
grad_A = scaling * (g @ B).T @ dropout(x), with u = dropout(x) @ A.T. The dropout mask is one byte
per element (uint8) instead of a float copy of x, its 1 / (1 - p) is folded into the rank-r side (addmm's
alpha) rather than a pass over [T, in], and it is drawn four elements per 64-bit random number
(`keep_mask`; torch's bernoulli_ draws one per element and was 8% of a step, more than the o_proj
matmul): p is then exact to 1/65536 (0.05 stays 0.05000). Without dropout the numerics are peft's up to
summation order (tests/test_train_speed.py checks loss and gradients against peft's own forward; with
dropout, against the plain formula under the same mask).

`fuse_lora(model)` switches every plain LoRA Linear of a peft model (one adapter, no DoRA or other
variant, no bias on B) to it; the rest keep peft's forward. Dropout stays as configured: same p,
a fresh mask per module and step, none in eval.
"""

from __future__ import annotations

import types
from typing import Any

import torch
import torch.nn.functional as F

KEEP_LEVELS = 1 << 16  # the dropout mask is drawn as 16-bit uniforms: p is rounded to a multiple of 2**-16


def keep_mask(shape: torch.Size, p: float, device: torch.device) -> tuple[torch.Tensor, float]:
    """A 0/1 uint8 mask keeping each element with probability 1 - p (p rounded to 1/65536), and that
    probability. Four 16-bit uniforms come from each 64-bit random draw: a third of bernoulli_'s time on CPU.
    uint8, not bool: `x * mask` then casts in the multiply's inner loop, where a bool mask is first
    copied whole to x's dtype (4x the time of the multiply, four times per projection and step)."""
    n = shape.numel()
    drop_levels = round(p * KEEP_LEVELS)
    bits = torch.randint(-2**63, 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64, device=device)
    keep = bits.view(torch.int16)[:n] >= drop_levels - KEEP_LEVELS // 2
    return keep.view(torch.uint8).view(shape), 1 - drop_levels / KEEP_LEVELS


class _LoraLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, lora_a, lora_b, scaling: float, p: float):
        flat = x.reshape(-1, x.shape[-1])
        keep, kept = keep_mask(flat.shape, p, flat.device) if p > 0 else (None, 1.0)
        u = (flat if keep is None else flat * keep) @ lora_a.t()  # [T, r]; 1 / kept goes into alpha
        # Out of place: under selective checkpointing the base product is a saved (cached) tensor.
        out = torch.addmm(F.linear(flat, weight, bias), u, lora_b.t(), alpha=scaling / kept)
        ctx.alpha = scaling / kept
        ctx.save_for_backward(flat, weight, lora_a, lora_b, u, keep)
        return out.reshape(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, grad_out):
        flat, weight, lora_a, lora_b, u, keep = ctx.saved_tensors
        alpha = ctx.alpha
        g = grad_out.reshape(-1, grad_out.shape[-1])
        gb = g @ lora_b  # [T, r]
        grad_b = (g.t() @ u).mul_(alpha)
        grad_a = (gb.t() @ (flat if keep is None else flat * keep)).mul_(alpha)
        grad_x = None
        if ctx.needs_input_grad[0]:
            lora_x = gb @ lora_a
            if keep is not None:
                lora_x.mul_(keep)
            grad_x = (g @ weight).add_(lora_x, alpha=alpha).reshape(grad_out.shape[:-1] + (-1,))
        return grad_x, None, None, grad_a, grad_b, None, None


def fused_lora_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, lora_a: torch.Tensor,
                      lora_b: torch.Tensor, scaling: float, p: float) -> torch.Tensor:
    """x @ weight.T + bias + scaling * dropout_p(x) @ lora_a.T @ lora_b.T, weight and bias frozen."""
    if weight.requires_grad or (bias is not None and bias.requires_grad):
        raise ValueError("fused_lora_linear: the base weight must be frozen (its gradient is not computed)")
    if torch.is_autocast_enabled(x.device.type):  # the same casts autocast gives F.linear
        dtype = torch.get_autocast_dtype(x.device.type)
        x, weight, lora_a, lora_b = (t.to(dtype) for t in (x, weight, lora_a, lora_b))
        bias = bias.to(dtype) if bias is not None else None
    with torch.autocast(x.device.type, enabled=False):
        return _LoraLinear.apply(x, weight, bias, lora_a, lora_b, scaling, p)


def _fusable(module: Any) -> bool:
    from peft.tuners.lora import Linear

    if type(module) is not Linear or module.merged or module.disable_adapters:
        return False
    adapters = list(module.active_adapters)
    if len(adapters) != 1 or adapters[0] in getattr(module, "lora_variant", {}):
        return False
    name = adapters[0]
    base = module.get_base_layer()
    return (type(base) is torch.nn.Linear and module.lora_B[name].bias is None
            and isinstance(module.lora_dropout[name], (torch.nn.Dropout, torch.nn.Identity)))


def _fused_forward(self: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    if args or kwargs or not _fusable(self):  # anything unusual: peft's own path
        return type(self).forward(self, x, *args, **kwargs)
    name = self.active_adapters[0]
    base = self.get_base_layer()
    dropout = self.lora_dropout[name]
    p = dropout.p if isinstance(dropout, torch.nn.Dropout) and self.training else 0.0
    return fused_lora_linear(x, base.weight, base.bias, self.lora_A[name].weight, self.lora_B[name].weight,
                             float(self.scaling[name]), float(p))


def fuse_lora(model: Any) -> int:
    """Route each plain LoRA Linear of a peft model through fused_lora_linear; returns how many."""
    count = 0
    for module in model.modules():
        if _fusable(module):
            module.forward = types.MethodType(_fused_forward, module)
            count += 1
    return count
