"""Where a transformers model runs when the user does not say: the one place that decides."""

from __future__ import annotations


def default_device() -> str:
    """"cuda" when a CUDA GPU is visible, else "cpu" (Apple's mps is not picked: some ops still fall back)."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def default_dtype(device: str | None) -> str:
    """The weights' dtype when the user does not say: the checkpoint's own ("auto") on a GPU, fp32 on the
    CPU (bf16/fp16 matmuls there are slow or unsupported); `device` None means default_device()'s."""
    device = device or default_device()
    return "fp32" if device == "cpu" or device.startswith("cpu:") else "auto"
