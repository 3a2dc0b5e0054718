"""The arena as a recipe stage: the pipeline's model against where it started, judged by a model.

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
    judge: str = option("model:default", help="`model:PATH_OR_URL` (a recipe cannot wait for a person)")
    judge_mode: str = option("score", help="local judge: score or generate")
    temperature: float = option(0.7, help="sampling temperature of the answers")
    max_new_tokens: int = option(256, help="longest answer, in tokens")
    batch_size: int = option(8, help="prompts generated together")
    n_bootstrap: int = option(1000, help="bootstrap rounds for the confidence intervals")
    seed: int = option(0, help="sampling and bootstrap seed")

    def __post_init__(self):
        if not self.judge.startswith("model:"):
            raise ConfigError("judge: a recipe stage needs a judge model (`model:PATH_OR_URL`); judge by hand with "
                              "`subjectlm eval arena judge --judge human`")
        if self.judge_mode not in JUDGE_MODES:
            raise ConfigError(f"judge_mode: {self.judge_mode!r} is not one of {', '.join(JUDGE_MODES)}")
        if not self.models and not self.base_model:
            raise ConfigError("base_model: nothing to compare `model` with; give base_model or models")


def run(config: ArenaStageConfig) -> dict[str, Any]:
    from subjectlm.arena.generate import run_generate
    from subjectlm.arena.judge_model import run_model_judge
    from subjectlm.arena.results import run_results
    from subjectlm.io import atomic_dir

    specs = config.models or [f"base={config.base_model}", f"tuned={config.model}"]
    with atomic_dir(config.output_dir, overwrite=True) as tmp:
        run_generate(GenerateConfig(output_dir=str(tmp), models=specs, prompts=config.prompts,
                                    temperature=config.temperature, max_new_tokens=config.max_new_tokens,
                                    seed=config.seed, batch_size=config.batch_size))
        run_model_judge(JudgeConfig(output_dir=str(tmp), judge=config.judge, judge_mode=config.judge_mode,
                                    seed=config.seed))
        result = run_results(ResultsConfig(output_dir=str(tmp), n_bootstrap=config.n_bootstrap, seed=config.seed))
    board = result["overall"]["leaderboard"]
    ranking = ", ".join(f"{r['model']} {r['bt']:.0f} [{r['bt_ci'][0]:.0f}–{r['bt_ci'][1]:.0f}]" for r in board)
    return {"summary": f"arena ({result['overall']['n_battles']} battles, {config.judge}): {ranking}",
            "results": str(config.output_dir)}
