"""The arena as a recipe stage: the pipeline's model against where it started, judged by a model
or, with `judge: reference`, against each prompt's reference answer (no model needed).

With no `models`, the stage compares `tuned` (the pipeline's current model, filled in as `model`)
with `base` (the recipe's starting model, filled in as `base_model`); `models` (NAME=PATH specs,
as for `subjectlm eval arena generate`) replaces that pair. The stage's folder is rebuilt on
every run (atomically): a re-run after retraining must not reuse the old model's answers.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

from subjectlm.arena.config import GenerateConfig, JudgeConfig, ResultsConfig, check_top_p
from subjectlm.backends.spec import model_options
from subjectlm.config import MODEL, ConfigError, check_options, config_from, option, same_option


@dataclasses.dataclass(kw_only=True)
class ArenaStageConfig(GenerateConfig):
    """`eval arena generate`'s own config (same keys, help and checks), the judge's and the results'
    keys the stage uses (taken from JudgeConfig and ResultsConfig with their help and checks), and
    the pipeline inputs `model` and `base_model`. `overwrite` changes nothing: the folder is new each run."""

    models: list[str] = same_option(GenerateConfig, "models", help="NAME=PATH[@key=value...] specs to compare "
                                                                    "instead of base and tuned")
    prompts: Optional[str] = same_option(GenerateConfig, "prompts", help="JSON lines with `prompt` and optional "
                                                                         "`id`, `category`, `reference` (required)")
    model: str = option("default", help="the tuned model (the recipe fills in the pipeline's current model)",
                        path=MODEL)
    base_model: Optional[str] = option(None, help="the model it is compared with (the recipe fills in its start model)",
                                       path=MODEL)
    judge: str = same_option(JudgeConfig, "judge", "model:default",
                             help="`model:PATH_OR_URL` (a local model dir, `default`, or an OpenAI-compatible "
                                  "endpoint), or `reference` (the answer closer to the prompt's reference wins); "
                                  "a recipe cannot wait for a person")
    judge_mode: str = same_option(JudgeConfig, "judge_mode")
    judge_model_name: str = same_option(JudgeConfig, "judge_model_name")
    api_key_env: str = same_option(JudgeConfig, "api_key_env")
    margin: float = same_option(JudgeConfig, "margin")
    n_bootstrap: int = same_option(ResultsConfig, "n_bootstrap")

    def __post_init__(self):  # not GenerateConfig's: with no `models` the stage compares base and tuned
        check_options(self)
        check_top_p(self.top_p)
        if not self.prompts:
            raise ConfigError("prompts: the stage needs a prompts file (JSON lines with `prompt`)")
        if self.judge != "reference" and not self.judge.startswith("model:"):
            raise ConfigError("judge: a recipe stage needs `reference` or a judge model (`model:PATH_OR_URL`); "
                              "judge by hand with `subjectlm eval arena judge --judge human`")
        if not self.models and not self.base_model:
            raise ConfigError("base_model: nothing to compare `model` with; give base_model or models")


def _judge_config(config: ArenaStageConfig, folder: str) -> JudgeConfig:
    """The judge keys the stage has (`models` and `max_new_tokens` are the answering models' there); the local
    judge opens like the answering models (model_options: dtype, device, trust_remote_code)."""
    return JudgeConfig(output_dir=folder, judge=config.judge, judge_mode=config.judge_mode, margin=config.margin,
                       judge_model_name=config.judge_model_name, api_key_env=config.api_key_env, seed=config.seed,
                       **model_options(config, JudgeConfig))


def head_to_head(battles: list[dict[str, Any]], model: str, other: str, n_bootstrap: int = 1000,
                 seed: int = 0) -> dict[str, Any]:
    """`model`'s win rate against `other` (a tie or both-bad counts half), with its bootstrap interval."""
    from subjectlm.scoring.stats import bootstrap_mean_ci

    points = []
    for b in battles:
        if {b["model_a"], b["model_b"]} != {model, other}:
            continue
        winner = {"A": b["model_a"], "B": b["model_b"]}.get(b["winner"])
        points.append(1.0 if winner == model else 0.0 if winner == other else 0.5)
    boot = bootstrap_mean_ci(points, n_bootstrap, seed=seed)
    return {"model": model, "other": other, "battles": boot["n"], "win_rate": boot["mean"], "ci": boot["ci"]}


def run(config: ArenaStageConfig) -> dict[str, Any]:
    from subjectlm.arena.generate import run_generate
    from subjectlm.arena.judge_model import run_model_judge
    from subjectlm.arena.judge_reference import run_reference_judge
    from subjectlm.arena.results import run_results
    from subjectlm.io import atomic_dir

    specs = config.models or [f"base={config.base_model}", f"tuned={config.model}"]
    with atomic_dir(config.output_dir, overwrite=True) as tmp:
        run_generate(config_from(GenerateConfig, config, output_dir=str(tmp), models=specs))
        judging = _judge_config(config, str(tmp))
        judged = run_reference_judge(judging) if config.judge == "reference" else run_model_judge(judging)
        result = run_results(ResultsConfig(output_dir=str(tmp), n_bootstrap=config.n_bootstrap, seed=config.seed))
    board = result["overall"]["leaderboard"]
    ranking = ", ".join(f"{r['model']} {r['bt']:.0f} [{r['bt_ci'][0]:.0f}–{r['bt_ci'][1]:.0f}]" for r in board)
    skipped = judged.get("skipped_prompts")
    note = f"; {skipped} prompt(s) without a reference skipped" if skipped else ""
    summary = f"arena ({result['overall']['n_battles']} battles, {config.judge}{note}): {ranking}"
    out: dict[str, Any] = {"results": str(config.output_dir), "leaderboard": board}
    if not config.models:
        from subjectlm.arena.records import load_battles

        duel = head_to_head(load_battles(config.output_dir), "tuned", "base", config.n_bootstrap, config.seed)
        if duel["battles"]:
            summary += f"; tuned win rate {duel['win_rate']:.2f} [{duel['ci'][0]:.2f}–{duel['ci'][1]:.2f}]"
        out["tuned_vs_base"] = duel
    return {"summary": summary, **out}
