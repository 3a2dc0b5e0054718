"""One module per `subjectlm` subcommand: `add_parser(subparsers)` (argparse only, no torch) and `run(args) -> int`.

    model.py    model prepare|path|info: the embedded default model
    data.py     data check: validate and report on training and exam data
    pt.py       pt: continued pre-training
    sft.py      sft: instruction tuning
    dpo.py      dpo: preference alignment
    _train.py   what pt, sft and dpo share: flags from the config dataclass, one run call
    merge.py    merge: LoRA adapters into full safetensors weights
    eval.py     eval exam|ppl|qa|compare (and `eval arena` from arena.py)
    arena.py    eval arena generate|judge|results
    export.py   export gguf|verify|lora|ollama
    chat.py     chat: in the terminal
    serve.py    serve: the OpenAI-compatible HTTP server
    recipe.py   run: a YAML recipe, stage by stage
    _common.py  small helpers (print_err)

No command catches user errors itself: cli.py does, once.
"""
