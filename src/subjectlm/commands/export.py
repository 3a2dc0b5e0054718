"""`subjectlm export gguf|verify|ollama`: GGUF for llama.cpp, quantized, checked against HF."""

from __future__ import annotations

import argparse

from subjectlm.config import add_config_arguments, config_from_args


def add_parser(subparsers) -> argparse.ArgumentParser:
    from subjectlm.export.job import GGUFConfig, LoraExportConfig, OllamaConfig, VerifyConfig

    parser = subparsers.add_parser("export", help="export to GGUF for llama.cpp, quantize, verify, ollama Modelfile")
    actions = parser.add_subparsers(dest="export_action", metavar="ACTION", required=True)
    gguf = actions.add_parser("gguf", help="convert a model to GGUF (and quantize it with llama.cpp)",
                              description="Convert a HF model directory to GGUF; --quantize writes NAME-TYPE.gguf too.")
    add_config_arguments(gguf, GGUFConfig)
    gguf.set_defaults(func=run_gguf)
    verify = actions.add_parser("verify", help="compare GGUF files with the HF model: KL divergence, top-1, perplexity",
                                description="Score the same tokens with the HF model and each GGUF; one row per GGUF.")
    add_config_arguments(verify, VerifyConfig)
    verify.set_defaults(func=run_verify)
    lora = actions.add_parser("lora", help="convert a PEFT LoRA adapter to a GGUF adapter (llama.cpp --lora)")
    add_config_arguments(lora, LoraExportConfig)
    lora.set_defaults(func=run_lora)
    ollama = actions.add_parser("ollama", help="write an ollama Modelfile (chat template, stop tokens) beside a GGUF")
    add_config_arguments(ollama, OllamaConfig)
    ollama.set_defaults(func=run_ollama)
    return parser


def run_gguf(args: argparse.Namespace) -> int:
    from subjectlm.export.job import GGUFConfig, export_all

    config = config_from_args(GGUFConfig, args)
    paths = export_all(config)
    if config.verify:
        from subjectlm.export.verify import format_table, verify

        print(format_table(verify(config.model, paths)))
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from pathlib import Path

    from subjectlm.export.job import VerifyConfig
    from subjectlm.export.verify import format_table, verify

    config = config_from_args(VerifyConfig, args)
    text = Path(config.data).read_text(encoding="utf-8") if config.data else None
    print(format_table(verify(config.model, config.gguf, text, config.max_tokens, config.adapter, config.lora)))
    return 0


def run_lora(args: argparse.Namespace) -> int:
    from subjectlm.export.job import LoraExportConfig
    from subjectlm.export.lora import export_lora_gguf
    from subjectlm.models import resolve_model

    config = config_from_args(LoraExportConfig, args)
    path = export_lora_gguf(config.adapter, resolve_model(config.model), config.output, config.outtype,
                            config.overwrite)
    print(f"wrote {path} (use with the base model's GGUF: llama.cpp --lora {path})")
    return 0


def run_ollama(args: argparse.Namespace) -> int:
    from subjectlm.export.job import OllamaConfig
    from subjectlm.export.ollama import write_modelfile

    config = config_from_args(OllamaConfig, args)
    path, chat_format = write_modelfile(config.gguf, config.output, config.system, config.overwrite)
    print(f"wrote {path} (chat format: {chat_format or 'not recognised; ollama will guess from the GGUF'})")
    return 0
