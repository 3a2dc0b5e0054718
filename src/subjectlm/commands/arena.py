"""`subjectlm eval arena generate|judge|results`: pairwise battles between models' answers (issue #8).

    subjectlm eval arena generate --models base=default tuned=runs/demo/sft --prompts p.jsonl O
    subjectlm eval arena judge --judge human O            # a web page on 127.0.0.1
    subjectlm eval arena judge --judge model:default O    # or model:http://127.0.0.1:8000/v1
    subjectlm eval arena judge --judge reference O        # against each prompt's reference, no model
    subjectlm eval arena results O

`add_arena_parser(eval_subparsers)` adds the `arena` command under `subjectlm eval`.
"""

from __future__ import annotations

import argparse

from subjectlm.arena.config import GenerateConfig, JudgeConfig, ResultsConfig
from subjectlm.config import ConfigError, add_config_arguments, config_from_args
from subjectlm.errors import UserError


def _config(cls: type, args: argparse.Namespace):
    """The config from YAML + flags, the positional folder O standing for --output_dir."""
    positional = getattr(args, "output_dir_pos", None)
    if positional:
        if getattr(args, "output_dir", positional) != positional:
            raise ConfigError(f"output_dir: given twice ({args.output_dir} and {positional})")
        args.output_dir = positional
    return config_from_args(cls, args)


def _generate(args: argparse.Namespace) -> int:
    from subjectlm.arena.generate import run_generate

    def go():
        config = _config(GenerateConfig, args)
        out = run_generate(config)
        for name, n in out["models"].items():
            print(f"{name}: {n['generated']} answers generated, {n['cached']} cached")
        print(f"answers of {len(out['models'])} model(s) on {out['prompts']} prompts in {config.output_dir}")

    go()
    return 0


def _judge(args: argparse.Namespace) -> int:
    def go():
        config = _config(JudgeConfig, args)
        if config.judge == "human":
            from subjectlm.arena.judge_human import serve

            out = serve(config)
            print(f"{out['judged']} of {out['total']} pairs judged; battles in {config.output_dir}/battles.jsonl")
            return
        if config.judge == "reference":
            from subjectlm.arena.judge_reference import run_reference_judge

            out = run_reference_judge(config)
            note = (f"; {out['skipped_prompts']} prompt(s) without a reference skipped ({out['skipped_pairs']} pairs)"
                    if out["skipped_prompts"] else "")
            print(f"{out['judged']} battles judged by reference{note}")
            return
        from subjectlm.arena.judge_model import run_model_judge
        from subjectlm.backends.openai import EndpointError

        try:
            out = run_model_judge(config)
        except EndpointError as exc:  # after the backend's retries
            raise UserError(f"judge endpoint: {exc}") from exc
        note = f" ({out['unparsed']} replies named no verdict: recorded as ties)" if out["unparsed"] else ""
        print(f"{out['judged']} battles judged by {config.judge}{note}")

    go()
    return 0


def _results(args: argparse.Namespace) -> int:
    from subjectlm.arena.results import leaderboard_md, run_results

    def go():
        config = _config(ResultsConfig, args)
        result = run_results(config)
        print(leaderboard_md(result), end="")
        print(f"written: {config.output_dir}/results.json, leaderboard.md, results.html")

    go()
    return 0


ACTIONS = {
    "generate": (GenerateConfig, _generate, "every model answers every prompt (cached per model and prompt)"),
    "judge": (JudgeConfig, _judge, "judge pairs of answers: --judge human (web page), --judge model:PATH_OR_URL "
                                   "or --judge reference (closer to the prompt's reference wins)"),
    "results": (ResultsConfig, _results, "win rates, Elo and Bradley-Terry ratings with bootstrap intervals"),
}


def add_arena_parser(eval_subparsers) -> argparse.ArgumentParser:
    parser = eval_subparsers.add_parser(
        "arena", help="pairwise battles between models' free answers: blind judging, win rates, Elo",
        description="Compare models' free answers pairwise, judged blind by you or a judge model.")
    actions = parser.add_subparsers(dest="arena_action", metavar="ACTION")
    for name, (cls, func, help_text) in ACTIONS.items():
        sub = actions.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("output_dir_pos", nargs="?", metavar="O", help="arena folder (same as --output_dir)")
        add_config_arguments(sub, cls, positional_config=False)
        sub.set_defaults(func=func)

    def _usage(args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(func=_usage)
    return parser
