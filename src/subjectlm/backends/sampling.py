"""Sampling with one random generator per row, as a transformers logits processor.

Each row is sampled with its own temperature, top-p and seed, and only the drawn token is
left standing, so that greedy decoding emits it. An answer then depends on its prompt, its
settings and its seed only, never on which other prompts shared its batch; a row with
temperature 0 keeps its argmax (greedy).
"""

from __future__ import annotations

import random
from typing import Sequence


def _per_row(value: float | Sequence[float], n: int) -> list[float]:
    return [float(value)] * n if isinstance(value, (int, float)) else [float(v) for v in value]


def draw(scores, temperature: float, top_p: float, generator):
    """One token id from one row of logits: argmax at temperature 0, else temperature then top-p."""
    import torch

    if temperature <= 0:
        return int(scores.argmax())
    probs = torch.softmax(scores.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        # drop a token when the tokens before it already cover top_p (the first is always kept)
        drop = (sorted_probs.cumsum(dim=-1) - sorted_probs) >= top_p
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs.masked_fill(drop, 0.0))
    return int(torch.multinomial(probs, 1, generator=generator))


def generator_for(seed: int | None, device: str):
    """A torch.Generator seeded with `seed` (a fresh random seed when None)."""
    import torch

    return torch.Generator(device=device).manual_seed(random.getrandbits(63) if seed is None else seed)


def make_row_sampler(temperature: float | Sequence[float], top_p: float | Sequence[float],
                     seeds: Sequence[int | None], device: str):
    """A LogitsProcessor over len(seeds) rows; a seed of None draws a fresh one."""
    import torch
    from transformers import LogitsProcessor

    n = len(seeds)
    temperatures, top_ps = _per_row(temperature, n), _per_row(top_p, n)

    class RowSampler(LogitsProcessor):
        def __init__(self):
            self.generators = [generator_for(s, device) for s in seeds]

        def __call__(self, input_ids, scores):
            out = torch.full_like(scores, float("-inf"))
            for row, generator in enumerate(self.generators):
                out[row, draw(scores[row], temperatures[row], top_ps[row], generator)] = 0.0
            return out

    return RowSampler()
