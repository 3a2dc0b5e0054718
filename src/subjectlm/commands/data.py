"""`subjectlm data check --kind pt|sft|dpo PATH... [--model M]`: validate data and report on it."""

from __future__ import annotations

import argparse

from subjectlm.commands._common import run_with_user_errors


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("data", help="validate and inspect training data (pt text, sft instructions, dpo pairs)")
    actions = parser.add_subparsers(dest="data_action", metavar="ACTION", required=True)
    check = actions.add_parser(
        "check", help="count records, token lengths, duplicates; list every bad record as file:line: field: problem",
        description="Exit 0 when every record is valid, 1 when any is bad.")
    check.add_argument("paths", nargs="+", metavar="PATH", help="data files or directories (.jsonl .json .txt .parquet)")
    check.add_argument("--kind", choices=["pt", "sft", "dpo"], required=True, help="what the data is for")
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

    def go():
        tokenizer = None
        if args.model:
            from subjectlm.models import load_tokenizer

            tokenizer = load_tokenizer(args.model)
        try:
            return check(args.kind, args.paths, tokenizer=tokenizer, max_length=args.max_length, txt_mode=args.txt_mode)
        except FileNotFoundError as exc:
            from subjectlm.errors import UserError

            raise UserError(str(exc)) from exc

    report = run_with_user_errors(go)
    print(json.dumps(report.to_json(), ensure_ascii=False, indent=2) if args.as_json else report.format())
    return 0 if report.ok else 1
