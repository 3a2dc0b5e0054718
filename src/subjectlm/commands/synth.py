"""`subjectlm synth`: a subject's documents -> pt/, sft/, dpo/, exam/, qa.jsonl through a teacher model (issue #26)."""

from __future__ import annotations

import argparse

EPILOG = """examples:
  subjectlm synth --data docs/ --teacher http://127.0.0.1:8000/v1 --output_dir runs/synth
  subjectlm synth --data book.pdf --teacher https://api.example.com/v1 --teacher_model big-model \\
      --api_key_env TEACHER_API_KEY --concurrency 16 --price_in 0.5 --price_out 1.5 --output_dir runs/synth
  subjectlm synth --data docs/ --teacher default --rewrites 2 --sft_questions 2 --output_dir runs/synth

Running the same command again resumes: every teacher reply is cached in output_dir (teacher_cache.jsonl)
and is not asked again. The API key is read from the variable --api_key_env names and written nowhere.
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    from subjectlm.config import add_config_arguments
    from subjectlm.synth.config import SynthConfig

    parser = subparsers.add_parser(
        "synth", help="make training data and a held-out exam from a subject's documents, through a teacher model",
        description="Chunk the documents, have a teacher model extract grounded facts, rewrite each chunk, ask "
                    "each fact several ways (sft), pair grounded with wrong answers (dpo), and write an exam and a "
                    "QA set that ask the same facts in other words, with a control group of chunks that nothing "
                    "trains on. Near-duplicates and exam questions overlapping the training data are removed "
                    "and counted in synth_report.md.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_arguments(parser, SynthConfig)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from subjectlm.config import config_from_args
    from subjectlm.synth import SynthConfig, run as synth

    result = synth(config_from_args(SynthConfig, args))
    print(result["summary"])
    print(f"report: {result['output_dir']}/synth_report.md")
    return 0
