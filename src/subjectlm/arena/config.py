"""Typed configs of the three arena actions: generate, judge, results (flags and YAML keys alike)."""

from __future__ import annotations

import dataclasses
from typing import Optional

from subjectlm.backends.spec import (
    OpensModel,
    batch_size_option,
    device_option,
    dtype_option,
    trust_remote_code_option,
)
from subjectlm.config import DATA_FILES, OUTPUT, ConfigError, check_options, option

JUDGE_MODES = ("score", "generate")


@dataclasses.dataclass
class GenerateConfig(OpensModel):
    """The models to answer with are `models`; the model fields below open each of them."""

    output_dir: str = option(help="arena folder: prompts, answers, battles and results go here", path=OUTPUT)
    models: list[str] = option([], help="NAME=PATH[@key=value...] per model; PATH may be `default`; keys: "
                                        "temperature, top_p, max_new_tokens, seed (e.g. hot=default@temperature=1.2)")
    prompts: Optional[str] = option(None, help="JSON lines with `prompt` and optional `id`, `category`, `reference` "
                                               "(optional after the first run: the folder keeps its prompts)",
                                      path=DATA_FILES)
    temperature: float = option(0.7, help="sampling temperature of models that do not set their own; 0 = greedy",
                                min=0)
    top_p: float = option(0.9, help="nucleus sampling mass of models that do not set their own")
    max_new_tokens: int = option(256, help="longest answer, in tokens", min=1)
    seed: int = option(0, help="sampling seed; each prompt draws from its own generator seeded by (seed, prompt id)")
    batch_size: int = batch_size_option("prompts generated together")
    dtype: str = dtype_option()
    device: Optional[str] = device_option()
    overwrite: bool = option(False, help="regenerate the answers of the named models (their old battles stay)")
    trust_remote_code: bool = trust_remote_code_option()

    def __post_init__(self):
        check_options(self)
        check_top_p(self.top_p)
        if not self.models:
            raise ConfigError("models: give at least one NAME=PATH")


def check_top_p(top_p: float) -> None:
    if not 0 < top_p <= 1:
        raise ConfigError(f"top_p: must be in (0, 1], got {top_p}")


@dataclasses.dataclass
class JudgeConfig(OpensModel):
    """A local judge model (`model:PATH`) opens with the model fields below."""

    output_dir: str = option(help="arena folder made by `subjectlm eval arena generate`")
    judge: str = option("human", help="`human` (a web page on 127.0.0.1), `model:PATH_OR_URL` (a local model dir, "
                                      "`default`, or an OpenAI-compatible endpoint such as http://127.0.0.1:8000/v1), "
                                      "or `reference` (the answer closer to the prompt's reference wins; no model)")
    models: list[str] = option([], help="judge only pairs among these model names (default: all models)")
    seed: int = option(0, help="seed of the order of pairs and of the sides shown to a person")
    port: int = option(8765, help="port of the judging page on 127.0.0.1 (0 = any free port)")
    judge_mode: str = option("score", help="local judge: `score` reads the verdict's probabilities (fast, always valid); "
                                           "`generate` writes a reply that is parsed", choices=JUDGE_MODES)
    judge_model_name: str = option("default", help="`model` field sent to an endpoint")
    api_key_env: str = option("OPENAI_API_KEY", help="environment variable holding an endpoint's API key, if it needs one")
    max_new_tokens: int = option(96, help="longest judge reply in generate mode or from an endpoint")
    request_timeout: float = option(120.0, help="seconds to wait for one endpoint reply")
    limit: int = option(0, help="judge model: at most this many new battles this run (0 = all)", min=0)
    margin: float = option(0.05, help="reference judge: key-fact recall or token-F1 differences up to this are a tie")
    dtype: str = dtype_option(help="local judge: weights dtype")
    device: Optional[str] = device_option(help="local judge device (default: cuda when available)")
    trust_remote_code: bool = trust_remote_code_option(help="run a local judge model's own Python code")

    def __post_init__(self):
        check_options(self)
        if self.judge not in ("human", "reference") and not self.judge.startswith("model:"):
            raise ConfigError(f"judge: {self.judge!r} is not `human`, `reference` or `model:PATH_OR_URL`")
        if self.judge.startswith("model:") and not self.judge[len("model:"):].strip():
            raise ConfigError("judge: `model:` needs a model directory, `default` or an endpoint URL after it")
        if not 0 <= self.port < 65536:
            raise ConfigError("port: must be in 0..65535")
        if not 0 <= self.margin < 1:
            raise ConfigError("margin: must be in [0, 1)")


@dataclasses.dataclass
class ResultsConfig:
    output_dir: str = option(help="arena folder with battles.jsonl")
    judges: list[str] = option([], help="use only battles by these judges (e.g. human); default: all")
    n_bootstrap: int = option(1000, help="bootstrap rounds for the confidence intervals", min=1)
    ci: float = option(0.95, help="confidence level of the intervals")
    elo_k: float = option(4.0, help="online Elo step size (Chatbot Arena's first leaderboard used 4)")
    seed: int = option(0, help="bootstrap seed")

    def __post_init__(self):
        check_options(self)
        if not 0 < self.ci < 1:
            raise ConfigError("ci: must be between 0 and 1")
        if self.elo_k <= 0:
            raise ConfigError("elo_k: must be > 0")
