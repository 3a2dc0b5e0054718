"""What each benchmark's baseline needs, and a clear line when it is missing.

A bench script asks `missing(...)` before it starts the baseline side; a non-empty answer is printed
as is (it names the pip command) and the script reports its own side only, instead of dying in a
child process's traceback. `make bench` installs the `bench` extra, which carries all of them.
"""

from __future__ import annotations

import importlib.util

# module to import -> what to pip install for it
INSTALL = {
    "lm_eval": "pip install -e '.[bench]'   (lm-eval, the exam baseline)",
    "trl": "pip install trl   (TRL's SFTTrainer, the SFT baseline)",
    "peft": "pip install peft   (PEFT's merge_and_unload, the merge baseline)",
    "llama_cpp": "pip install -e '.[gguf]'   (llama-cpp-python)",
    "sse_starlette": "pip install -e '.[bench]'   (llama-cpp-python's server extras)",
    "starlette_context": "pip install -e '.[bench]'   (llama-cpp-python's server extras)",
    "pydantic_settings": "pip install -e '.[bench]'   (llama-cpp-python's server extras)",
}


def missing(*modules: str) -> str | None:
    """None when every module imports; else one line naming what is missing and how to install it."""
    absent = [m for m in modules if importlib.util.find_spec(m) is None]
    if not absent:
        return None
    how = sorted({INSTALL.get(m, f"pip install {m}") for m in absent})
    return f"baseline missing: {', '.join(absent)} not installed; {'; '.join(how)}"
