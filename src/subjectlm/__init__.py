"""subjectlm: turn an open LLM into a validated subject expert, and ship it.

Stages are plain functions over typed config dataclasses; the CLI (`subjectlm ...`)
only parses flags and YAML and calls them. Heavy libraries (torch, transformers)
are imported inside the stage functions so that `import subjectlm` and
`subjectlm --help` stay fast. Top to bottom, as import-linter checks the layers (pyproject.toml):

    cli.py, commands/    the command line: parse flags + YAML, call one function; user errors caught once
    pipeline/            `subjectlm run`: a recipe's stages in order, one plan for --dry-run and the run
    report/              one validation page per recipe run
    train/ merge/ eval/ export/ serve/ arena/    the stages
    backends/            one model layer for generation (hf, llama.cpp, vLLM)
    data/                data files -> validated records, every problem as file:line
    scoring/             pure scores and paired statistics shared by the stages
    models.py            the embedded default model, local model directories, the one dtype table
    io.py                atomic outputs, JSON lines, the output-directory policy
    config.py            typed config dataclasses <- YAML <- flags; option(choices=, min=)
    errors.py            UserError: what a user can fix
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
