"""Quantize a GGUF with llama.cpp itself (llama-cpp-python's `llama_model_quantize`).

The quantization types are whatever the installed llama.cpp offers: read from its
`LLAMA_FTYPE_MOSTLY_*` constants, so a newer llama-cpp-python brings new types with it.
"""

from __future__ import annotations

import os
from pathlib import Path

from subjectlm.errors import UserError


class QuantizeError(UserError, ValueError):
    pass


def _llama_cpp():
    try:
        import llama_cpp
    except ImportError as exc:
        from subjectlm.errors import UserError

        raise UserError("quantizing needs llama-cpp-python: pip install 'subjectlm[gguf]'") from exc
    return llama_cpp


def quant_types() -> dict[str, int]:
    """Lower-case type name (`q4_k_m`) -> llama.cpp file type id."""
    llama_cpp = _llama_cpp()
    types = {}
    for attr in dir(llama_cpp):
        for prefix in ("LLAMA_FTYPE_MOSTLY_", "LLAMA_FTYPE_ALL_"):
            if attr.startswith(prefix):
                types[attr[len(prefix):].lower()] = int(getattr(llama_cpp, attr))
    types.pop("guessed", None)
    return types


def _quiet(verbose: bool):
    """llama.cpp logs every tensor to stderr; keep that for --verbose only."""
    import contextlib

    try:
        from llama_cpp._utils import suppress_stdout_stderr
    except ImportError:
        return contextlib.nullcontext()
    return suppress_stdout_stderr(disable=verbose)


def quantize(source: str | Path, output: str | Path, qtype: str, overwrite: bool = False,
             threads: int | None = None, verbose: bool = False) -> Path:
    """Write `output` as `source` quantized to `qtype` (atomically)."""
    import ctypes

    from subjectlm.io import check_output_dir, temp_sibling

    llama_cpp = _llama_cpp()
    source, output = Path(source), Path(output)
    types = quant_types()
    key = qtype.lower()
    if key not in types:
        raise QuantizeError(f"quantize: unknown type {qtype!r}; llama.cpp offers: {', '.join(sorted(types))}")
    check_output_dir(output, overwrite)
    output.parent.mkdir(parents=True, exist_ok=True)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = types[key]
    params.nthread = threads or (os.cpu_count() or 1)
    tmp = str(temp_sibling(output))
    try:
        with _quiet(verbose):
            status = llama_cpp.llama_model_quantize(str(source).encode(), tmp.encode(), ctypes.byref(params))
        if status != 0:
            raise QuantizeError(f"llama.cpp could not quantize {source} to {qtype} (status {status}); "
                                "some i-quants need an importance matrix")
        os.replace(tmp, output)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return output
