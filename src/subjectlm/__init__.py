"""subjectlm: turn an open LLM into a validated subject expert, and ship it.

Stages are plain functions over typed config dataclasses; the CLI (`subjectlm ...`)
only parses flags and YAML and calls them. Heavy libraries (torch, transformers)
are imported inside the stage functions so that `import subjectlm` and
`subjectlm --help` stay fast.
"""

import os

# Nothing in subjectlm may reach for a model hub: every model is a local directory
# (or the embedded default model). Set before transformers/datasets are imported
# anywhere, and only as defaults so a user can still opt in explicitly.
for _switch in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_switch, "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

__version__ = "0.1.0"
