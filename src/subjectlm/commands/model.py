"""`subjectlm model prepare|path|info`: the embedded default model, offline."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("model", help="prepare the embedded default model (SmolLM2-135M-Instruct), show model info")
    actions = parser.add_subparsers(dest="model_action", metavar="ACTION", required=True)
    prepare = actions.add_parser("prepare", help="dequantize the shipped GGUF once into a safetensors model; print its path")
    prepare.add_argument("--force", action="store_true", help="rebuild even if it is already prepared")
    prepare.set_defaults(func=run_prepare)
    path = actions.add_parser("path", help="print the directory a model name resolves to")
    path.add_argument("model", nargs="?", default="default")
    path.set_defaults(func=run_path)
    info = actions.add_parser("info", help="architecture, size, vocabulary and chat template of a model")
    info.add_argument("model", nargs="?", default="default")
    info.set_defaults(func=run_info)
    return parser


def run_prepare(args: argparse.Namespace) -> int:
    from subjectlm.models import prepare_default_model

    path = prepare_default_model(force=args.force)
    print(path)
    return 0


def run_path(args: argparse.Namespace) -> int:
    from subjectlm.models import resolve_model

    print(resolve_model(args.model, prepare=False))
    return 0


def run_info(args: argparse.Namespace) -> int:
    import json

    from subjectlm.models import resolve_model

    path = resolve_model(args.model)
    config = json.loads((path / "config.json").read_text())
    size = sum(p.stat().st_size for p in path.glob("*.safetensors"))
    print(f"path:          {path}")
    print(f"architecture:  {', '.join(config.get('architectures', []))} ({config.get('model_type')})")
    print(f"layers/hidden: {config.get('num_hidden_layers')} / {config.get('hidden_size')}")
    print(f"vocab size:    {config.get('vocab_size')}")
    print(f"weights:       {size / 2**20:.1f} MiB safetensors, dtype {config.get('dtype', config.get('torch_dtype'))}")
    print(f"chat template: {'yes' if (path / 'chat_template.jinja').exists() or 'chat_template' in (path / 'tokenizer_config.json').read_text() else 'no'}")
    return 0
