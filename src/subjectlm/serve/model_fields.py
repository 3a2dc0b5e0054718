"""The model fields that `chat` and `serve` share: one model, opened to answer, declared once."""

from __future__ import annotations

import dataclasses

from subjectlm.backends.spec import (
    OpensModel,
    backend_option,
    device_option,
    dtype_option,
    model_option,
    n_ctx_option,
    trust_remote_code_option,
)


@dataclasses.dataclass
class AnsweringModel(OpensModel):
    """Base of ChatConfig and ServeConfig: their flags start with these (--help lists them first)."""

    model: str = model_option()
    backend: str = backend_option()
    dtype: str | None = dtype_option(None)
    device: str | None = device_option()
    n_ctx: int = n_ctx_option()
    trust_remote_code: bool = trust_remote_code_option()
