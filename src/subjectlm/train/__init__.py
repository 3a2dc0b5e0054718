"""Training stages: pt (continued pre-training) and sft (instruction tuning), LoRA by default.

Configs in `config.py` (no torch import, so `--help` stays fast); shared Trainer set-up and
outputs in `setup.py`; chat templates in `templates.py`; tokenization and its cache in
`tokenize.py`; padding-free packed batches and per-example attention in `packing.py`.
"""
