"""`subjectlm data check --kind pt|sft|dpo|exam PATH... [--model M] [--strict]`: validate data and report on it.
`subjectlm data overlap --train PATH... --eval PATH... [--strict]`: evaluation items found in the training data."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("data", help="validate and inspect training data (pt text, sft instructions, dpo pairs)")
    actions = parser.add_subparsers(dest="data_action", metavar="ACTION", required=True)
    check = actions.add_parser(
        "check", help="count records, token lengths, duplicates; list every bad record as file:line: field: problem",
        description="Lists every problem as `error: file:line: field: problem` and every oddity that is read anyway "
                    "(a BOM, a duplicate, a record over --max_length, an unmapped exam subject) as `warning: ...`. "
                    "Exit status: 0 ok, 1 findings (errors, or warnings under --strict), 2 a usage error.")
    check.add_argument("paths", nargs="+", metavar="PATH",
                       help="data files or directories (.jsonl .json .txt .parquet); for --kind exam, exam directories")
    check.add_argument("--kind", choices=["pt", "sft", "dpo", "exam"], required=True,
                       help="what the data is for (exam: a C-Eval, CMMLU or MMLU directory)")
    check.add_argument("--strict", action="store_true", help="count warnings as errors (exit 1 on any)")
    check.add_argument("--format", dest="exam_format", choices=["auto", "ceval", "cmmlu", "mmlu"], default="auto",
                       help="exam layout for --kind exam (auto: detected)")
    check.add_argument("--model", help="measure lengths in this model's tokens (e.g. `default`); characters otherwise")
    check.add_argument("--max_length", type=int, help="report records longer than this")
    check.add_argument("--txt_mode", choices=["auto", "line", "paragraph"], default="auto",
                       help=".txt files: one document per line or per blank-line paragraph (auto: paragraphs if blank lines separate text)")
    check.add_argument("--json", dest="as_json", action="store_true", help="print the report as JSON")
    check.set_defaults(func=run_check)
    add_overlap_parser(actions)
    return parser


def add_overlap_parser(actions) -> None:
    import dataclasses

    from subjectlm.data.overlap import OverlapConfig

    overlap = actions.add_parser(
        "overlap", help="find evaluation items (exam, QA, arena prompts, held-out text) that sit in the training data",
        description="For every evaluation item: the longest run of tokens it shares with the training data (words; "
                    "Chinese/Japanese characters; after normalising case, whitespace and full-/half-width forms) and its "
                    "most similar training record (Jaccard of token shingles). Items at or over either threshold are "
                    "flagged with the evaluation file:line and the training file:line they matched. Exit status: 0, "
                    "or 1 under --strict when anything is flagged; 2 a usage error.")
    overlap.add_argument("--train", nargs="+", required=True, metavar="PATH",
                         help="training data as pt/sft/dpo read it: files or directories")
    overlap.add_argument("--eval", nargs="+", required=True, metavar="PATH",
                         help="exam directories (C-Eval/CMMLU/MMLU layout), QA .jsonl, arena prompts .jsonl, held-out .txt")
    for f in dataclasses.fields(OverlapConfig):  # defaults live in OverlapConfig; None here means "not given"
        overlap.add_argument(f"--{f.name}", type=type(f.default), choices=f.metadata["choices"],
                             help=f"{f.metadata['help']} (default {f.default})")
    overlap.add_argument("--output", metavar="FILE.json", help="also write the full report as JSON (as leakage.json)")
    overlap.add_argument("--strict", action="store_true", help="exit with status 1 when any item is flagged")
    overlap.set_defaults(func=run_overlap)


def run_overlap(args: argparse.Namespace) -> int:
    import dataclasses
    import sys

    from subjectlm.data.overlap import OverlapConfig, find_overlap
    from subjectlm.io import write_json

    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(OverlapConfig) if getattr(args, f.name) is not None}
    report = find_overlap(args.train, args.eval, OverlapConfig(**given), log=lambda line: print(line, file=sys.stderr))
    print(report.format())
    if args.output:
        write_json(args.output, report.to_json())
    return 1 if args.strict and report.flagged else 0


def run_check(args: argparse.Namespace) -> int:
    import json

    from subjectlm.data.check import check

    if args.kind == "exam":
        from subjectlm.eval.exam.check import check_exam

        reports = [check_exam(path, args.exam_format, strict=args.strict) for path in args.paths]
        if args.as_json:
            print(json.dumps([r.to_json() for r in reports], ensure_ascii=False, indent=2))
        else:
            print("\n\n".join(r.format() for r in reports))
        return 0 if all(r.ok for r in reports) else 1
    tokenizer = None
    if args.model:
        from subjectlm.models import load_tokenizer

        tokenizer = load_tokenizer(args.model)
    report = check(args.kind, args.paths, tokenizer=tokenizer, max_length=args.max_length, txt_mode=args.txt_mode,
                   strict=args.strict)
    print(json.dumps(report.to_json(), ensure_ascii=False, indent=2) if args.as_json else report.format())
    return 0 if report.ok else 1
