"""Where a transformers model runs when the user does not say: the one place that decides."""

from __future__ import annotations


def default_device() -> str:
    """"cuda" when a CUDA GPU is visible, else "cpu" (Apple's mps is not picked: some ops still fall back)."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
