"""`subjectlm data check --kind pt|sft|dpo|exam PATH... [--model M] [--strict]`: validate data and report on it."""

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
    return parser


def run_check(args: argparse.Namespace) -> int:
    import json

    from subjectlm.data.check import check

    if args.kind == "exam":
        from subjectlm.eval.exam_check import check_exam

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
