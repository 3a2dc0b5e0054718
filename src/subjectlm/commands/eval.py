"""`subjectlm eval`: validate subject knowledge (C-Eval/CMMLU/MMLU exams, perplexity, compare) (issue #6; not landed yet)."""

from subjectlm.commands._common import pending


def add_parser(subparsers):
    return pending(subparsers, "eval", "validate subject knowledge (C-Eval/CMMLU/MMLU exams, perplexity, compare)", issue=6)
