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

from subjectlm.arena.config import JUDGE_MODES, GenerateConfig, JudgeConfig, ResultsConfig
from subjectlm.config import ConfigError, option


@dataclasses.dataclass
class ArenaStageConfig:
    prompts: str = option(help="JSON lines with `prompt` and optional `id`, `category`, `reference`")
    output_dir: str = option(help="arena folder (the recipe gives output_dir/<stage name>)")
    model: str = option("default", help="the tuned model (the recipe fills in the pipeline's current model)")
    base_model: Optional[str] = option(None, help="the model it is compared with (the recipe fills in its start model)")
    models: list[str] = option([], help="NAME=PATH[@key=value...] specs to compare instead of base and tuned")
    judge: str = option("model:default", help="`model:PATH_OR_URL`, or `reference` (the answer closer to the prompt's "
                                               "reference wins); a recipe cannot wait for a person")
    margin: float = option(0.05, help="reference judge: score differences up to this are a tie")
    judge_mode: str = option("score", help="local judge: score or generate")
    temperature: float = option(0.7, help="sampling temperature of the answers")
    max_new_tokens: int = option(256, help="longest answer, in tokens")
    batch_size: int = option(8, help="prompts generated together")
    n_bootstrap: int = option(1000, help="bootstrap rounds for the confidence intervals")
    seed: int = option(0, help="sampling and bootstrap seed")

    def __post_init__(self):
        if self.judge != "reference" and not self.judge.startswith("model:"):
            raise ConfigError("judge: a recipe stage needs `reference` or a judge model (`model:PATH_OR_URL`); "
                              "judge by hand with `subjectlm eval arena judge --judge human`")
        if self.judge_mode not in JUDGE_MODES:
            raise ConfigError(f"judge_mode: {self.judge_mode!r} is not one of {', '.join(JUDGE_MODES)}")
        if not self.models and not self.base_model:
            raise ConfigError("base_model: nothing to compare `model` with; give base_model or models")


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
        run_generate(GenerateConfig(output_dir=str(tmp), models=specs, prompts=config.prompts,
                                    temperature=config.temperature, max_new_tokens=config.max_new_tokens,
                                    seed=config.seed, batch_size=config.batch_size))
        judging = JudgeConfig(output_dir=str(tmp), judge=config.judge, judge_mode=config.judge_mode,
                              margin=config.margin, seed=config.seed)
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
