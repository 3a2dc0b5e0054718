"""`subjectlm eval exam|ppl|compare` (issue #6), plus `eval arena` from commands/arena.py (issue #8).

Only argparse here: torch and transformers are imported when a subcommand runs.
"""

from __future__ import annotations

import argparse

from subjectlm.commands._common import print_err
from subjectlm.compat.cla3.flags import ExamFlags
from subjectlm.config import add_config_arguments, config_from_args
from subjectlm.eval.ppl import PPLConfig
from subjectlm.eval.qa.runner import QAConfig


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("eval", help="validate subject knowledge: C-Eval/CMMLU/MMLU exams, perplexity, compare",
                                   description="Validate subject knowledge: exams, perplexity, before/after comparison.")
    actions = parser.add_subparsers(dest="eval_action", metavar="ACTION", required=True)

    exam = actions.add_parser(
        "exam", help="answer a multiple-choice exam (C-Eval, CMMLU or MMLU layout) with the official prompts",
        description="Answer an exam with the official answer-only prompts (few-shot prefix computed once per "
                    "subject). Writes predictions.jsonl, summary.json, report.md, categories.png and, for the "
                    "test split, submission.json.")
    add_config_arguments(exam, ExamFlags)  # ExamConfig's keys and the old eval.py's (compat/cla3/flags.py)
    exam.set_defaults(func=run_exam_command)

    ppl = actions.add_parser("ppl", help="held-out perplexity per text file (sliding window)")
    add_config_arguments(ppl, PPLConfig)
    ppl.set_defaults(func=run_ppl_command)

    qa = actions.add_parser(
        "qa", help="closed-book QA: answers scored against references (EM, F1, key facts, reference log-likelihood)",
        description="Answer questions greedily and score each answer against its reference: exact and contains "
                    "match, token-F1, key-fact recall, and the reference's teacher-forced log-likelihood. With "
                    "--base_model, both models answer and are compared (paired bootstrap CI, sign test).")
    add_config_arguments(qa, QAConfig)
    qa.set_defaults(func=run_qa_command)

    cmp = actions.add_parser("compare", help="per-subject/category accuracy deltas of two exam runs, with McNemar test "
                                             "(two `eval qa` runs: per-score bootstrap CIs and sign tests; two "
                                             "`eval ppl --output` JSON files: perplexity ratios)",
                             description="Compare two `eval exam` output dirs question by question "
                                         "(exact McNemar test on the questions both answered, bootstrap interval "
                                         "of each delta). Run it on a general exam (C-Eval, CMMLU, MMLU) answered "
                                         "by the start and the tuned model to see what the tuning cost; two "
                                         "`eval ppl --output` files give the perplexity ratio B / A per file.")
    cmp.add_argument("run_a", metavar="RUN_A", help="output dir of the first run (e.g. the base model)")
    cmp.add_argument("run_b", metavar="RUN_B", help="output dir of the second run (e.g. the tuned model)")
    cmp.add_argument("--output_dir", default=None, help="where compare.json/.md/.png go (default: RUN_B/compare)")
    cmp.set_defaults(func=run_compare_command)

    # `eval arena` lives in commands/arena.py; it only adds its parser here.
    from subjectlm.commands.arena import add_arena_parser

    add_arena_parser(actions)
    return parser


def run_exam_command(args: argparse.Namespace) -> int:
    from subjectlm.compat.cla3.flags import exam_config
    from subjectlm.compat.cla3.run import run_exam_with_old_flags
    from subjectlm.eval.exam.report import render_markdown

    config, old = exam_config(config_from_args(ExamFlags, args))
    summary = run_exam_with_old_flags(config, old, log=print_err)
    print(render_markdown(summary))
    print(f"outputs in {config.output_dir}")
    return 0


def run_ppl_command(args: argparse.Namespace) -> int:
    from subjectlm.eval.ppl import run_ppl

    config = config_from_args(PPLConfig, args)
    result = run_ppl(config)
    print(f"overall perplexity {result['overall']['ppl']:.3f} over {result['overall']['tokens']} tokens")
    return 0


def run_compare_command(args: argparse.Namespace) -> int:
    from subjectlm.eval.exam.compare import compare_runs, render_markdown
    from subjectlm.eval.qa.compare import compare_qa_runs, is_qa_run

    if all(str(p).endswith(".json") for p in (args.run_a, args.run_b)):  # two `eval ppl --output` files: ratios
        from subjectlm.eval.exam.compare import compare_ppl_files, render_ppl_markdown

        result = compare_ppl_files(args.run_a, args.run_b, args.output_dir)
        print(render_ppl_markdown(result), end="")
        print(f"outputs in {result['output_dir']}")
        return 0
    if is_qa_run(args.run_a) and is_qa_run(args.run_b):  # two `eval qa` runs: per-score CIs and sign tests
        from subjectlm.eval.qa.compare import render_markdown as qa_markdown

        result = compare_qa_runs(args.run_a, args.run_b, args.output_dir)
        print(qa_markdown(result), end="")
        print(f"outputs in {result['output_dir']}")
        return 0
    result = compare_runs(args.run_a, args.run_b, args.output_dir)
    print(render_markdown(result, args.run_a, args.run_b))
    print(f"outputs in {result['output_dir']}")
    return 0


def run_qa_command(args: argparse.Namespace) -> int:
    from subjectlm.eval.qa.compare import render_markdown as compare_markdown
    from subjectlm.eval.qa.runner import SCORES, run_qa

    config = config_from_args(QAConfig, args)
    result = run_qa(config, log=print_err)
    if config.base_model is None:
        scores = result["scores"]
        print(f"{result['n']} questions: " + ", ".join(
            f"{s} {scores[s]:.3f}" for s in SCORES if scores[s] is not None))
    else:
        print(compare_markdown(result["compare"]), end="")
    print(f"outputs in {config.output_dir}")
    return 0
