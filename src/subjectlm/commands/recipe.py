"""`subjectlm run RECIPE.yaml`: the whole pipeline from one YAML file."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("run", help="run the stages of a YAML recipe in order (pt -> sft -> merge -> eval -> export)")
    parser.add_argument("recipe", help="recipe YAML file (see examples/demo.yaml)")
    parser.add_argument("--force", action="store_true", help="re-run stages that already finished")
    parser.add_argument("--only", nargs="+", metavar="STAGE", help="run only these stage names")
    parser.add_argument("--dry-run", "--dry_run", dest="dry_run", action="store_true",
                        help="check the recipe (YAML, stage keys, paths, every stage's data) and print the plan: "
                             "what each stage reads and writes and whether it would run; exit 0 ok, 1 findings")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    if args.dry_run:
        from subjectlm.pipeline.plan import plan

        planned = plan(args.recipe, force=args.force, only=args.only)
        print(planned.format())
        return 0 if planned.ok else 1
    from subjectlm.pipeline.execute import run_recipe

    outcomes = run_recipe(args.recipe, force=args.force, only=args.only)
    print("\nsummary")
    width = max((len(o.name) for o in outcomes), default=5)
    for o in outcomes:
        print(f"  {o.name:<{width}}  {o.status:<16} {o.summary}")
    return 0
