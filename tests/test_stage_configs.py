"""A recipe stage takes its command's own config: same keys, help, defaults and checks; allowed
values (`option(choices=, min=)`) are checked wherever a config is built and listed by --help."""

from __future__ import annotations

import dataclasses

import pytest

from subjectlm.arena.config import GenerateConfig, JudgeConfig, ResultsConfig
from subjectlm.arena.recipe_stage import ArenaStageConfig
from subjectlm.cli import build_parser, main
from subjectlm.config import ConfigError, build_config, config_from_args
from subjectlm.eval.recipe_stage import EvalStageConfig
from subjectlm.export.job import ExportStageConfig, GGUFConfig
from subjectlm.pipeline.recipe import load_recipe
from subjectlm.pipeline.stages import STAGE_KINDS
from subjectlm.pipeline.state import PipelineState
from subjectlm.pipeline.values import stage_values

RECIPE = """\
model: default
output_dir: out
stages:
  - stage: export
    question: "Why?"
  - stage: arena
    prompts: prompts.jsonl
    judge: reference
"""


def _recipe_configs(tmp_path, text: str = RECIPE) -> list:
    """Each stage's config as `subjectlm run` builds it (YAML keys, pipeline inputs, build_config)."""
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    recipe = load_recipe(path)
    state = PipelineState.start(recipe.model)
    configs = []
    for stage in recipe.stages:
        kind = STAGE_KINDS[stage.kind]
        values = stage_values(recipe, stage, kind, state, fail=lambda where, message: pytest.fail(message))
        configs.append(build_config(kind.config_class(), values, source=recipe.where("stages", stage.index)))
    return configs


def _cli_config(cls: type, *argv: str):
    """The config the CLI builds from `argv` (flags not given keep the dataclass defaults)."""
    return config_from_args(cls, build_parser().parse_args(list(argv)))


def _same_fields(stage_config, cli_config, cls: type, besides: set[str]) -> dict[str, tuple]:
    """Fields of `cls` on which the two configs differ, other than `besides`."""
    return {f.name: (getattr(stage_config, f.name), getattr(cli_config, f.name))
            for f in dataclasses.fields(cls) if f.name not in besides
            and getattr(stage_config, f.name) != getattr(cli_config, f.name)}


def test_recipe_export_and_arena_stages_get_the_commands_configs(tmp_path):
    export, arena = _recipe_configs(tmp_path)
    assert isinstance(export, GGUFConfig) and isinstance(arena, GenerateConfig)

    # export: every `export gguf` key with the CLI's default, but the pipeline's model, the file
    # under the stage's folder and the three declared recipe defaults.
    cli = _cli_config(GGUFConfig, "export", "gguf")
    assert _same_fields(export, cli, GGUFConfig, besides={"model", "output", "quantize", "verify", "overwrite"}) == {}
    assert (export.quantize, export.verify, export.overwrite) == (["q8_0"], True, True)
    assert export.output == str(tmp_path / "out" / "export" / "model-f16.gguf")
    assert export.question == "Why?"

    # arena: `eval arena generate`'s keys with the CLI's defaults; the judge and results keys the
    # stage takes keep JudgeConfig's and ResultsConfig's defaults (the judge is the recipe's).
    generate = _cli_config(GenerateConfig, "eval", "arena", "generate", "--output_dir", "o", "--models", "a=default")
    assert _same_fields(arena, generate, GenerateConfig, besides={"output_dir", "models", "prompts"}) == {}
    judge = _cli_config(JudgeConfig, "eval", "arena", "judge", "--output_dir", "o")
    shared = {f.name for f in dataclasses.fields(ArenaStageConfig)}
    differs = _same_fields(arena, judge, JudgeConfig,
                           besides={"output_dir", "judge", "models", "max_new_tokens"}
                           | {f.name for f in dataclasses.fields(JudgeConfig)} - shared)
    assert differs == {}
    results = _cli_config(ResultsConfig, "eval", "arena", "results", "--output_dir", "o")
    assert arena.n_bootstrap == results.n_bootstrap
    assert arena.judge == "reference" and arena.prompts == str(tmp_path / "prompts.jsonl")
    assert (arena.model, arena.base_model) == ("default", "default")  # filled in by the pipeline


def test_the_demo_recipes_export_and_arena_keys_still_build():
    from pathlib import Path

    demo = Path(__file__).resolve().parent.parent / "examples" / "demo.yaml"
    recipe = load_recipe(demo)
    state = PipelineState.start(recipe.model)
    built = {}
    for stage in recipe.stages:
        if stage.kind in ("export", "arena"):
            kind = STAGE_KINDS[stage.kind]
            values = stage_values(recipe, stage, kind, state, fail=lambda where, message: pytest.fail(message))
            built[stage.kind] = build_config(kind.config_class(), values)
    assert built["export"].quantize == ["q8_0"] and built["export"].question
    assert built["arena"].judge == "reference" and built["arena"].max_new_tokens == 64


def test_stage_fields_keep_the_commands_help_and_checks():
    help_of = {cls: {f.name: f.metadata for f in dataclasses.fields(cls)} for cls in
               (GGUFConfig, ExportStageConfig, GenerateConfig, JudgeConfig, ArenaStageConfig)}
    for name in ("outtype", "converter", "quantize", "pre_tokenizer"):
        assert help_of[ExportStageConfig][name] == help_of[GGUFConfig][name]
    for name in ("temperature", "max_new_tokens", "batch_size", "dtype"):
        assert help_of[ArenaStageConfig][name] == help_of[GenerateConfig][name]
    assert help_of[ArenaStageConfig]["judge_mode"] == help_of[JudgeConfig]["judge_mode"]
    assert help_of[ArenaStageConfig]["judge"]["help"] != help_of[JudgeConfig]["judge"]["help"]  # no `human` here


def test_a_bad_choice_in_a_recipe_stage_is_one_error_naming_the_field(tmp_path, capsys):
    path = tmp_path / "recipe.yaml"
    path.write_text(RECIPE.replace('question: "Why?"', "outtype: q4"))
    with pytest.raises(ConfigError, match=r"recipe.yaml:4: outtype: must be one of f32, f16, bf16, q8_0, got 'q4'$"):
        _recipe_configs(tmp_path, path.read_text())
    (tmp_path / "prompts.jsonl").write_text('{"prompt": "Why?", "reference": "Because."}\n')
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert errors[0] == (f"error: {path}:5: stage export: outtype: must be one of f32, f16, bf16, q8_0, got 'q4' "
                         "(found by the recipe check: no stage was run)")
    assert not (tmp_path / "out" / "export").exists()  # stopped before any stage ran


@pytest.mark.parametrize(("build", "message"), [
    # export
    (lambda: GGUFConfig(converter="ollama"), "converter: must be one of auto, subjectlm, llama.cpp, got 'ollama'"),
    (lambda: ExportStageConfig(outtype="q4_0"), "outtype: must be one of f32, f16, bf16, q8_0, got 'q4_0'"),
    (lambda: ExportStageConfig(answer_tokens=0), "answer_tokens: must be at least 1, got 0"),
    # arena
    (lambda: GenerateConfig(output_dir="o", models=["a=default"], batch_size=0), "batch_size: must be at least 1"),
    (lambda: GenerateConfig(output_dir="o", models=["a=default"], temperature=-0.5),
     "temperature: must be at least 0, got -0.5"),
    (lambda: JudgeConfig(output_dir="o", judge_mode="vote"), "judge_mode: must be one of score, generate, got 'vote'"),
    (lambda: JudgeConfig(output_dir="o", limit=-1), "limit: must be at least 0, got -1"),
    (lambda: ResultsConfig(output_dir="o", n_bootstrap=0), "n_bootstrap: must be at least 1, got 0"),
    (lambda: ArenaStageConfig(prompts="p", output_dir="o", base_model="b", max_new_tokens=0),
     "max_new_tokens: must be at least 1, got 0"),
    # eval stage (ExamConfig's keys, dtype included)
    (lambda: EvalStageConfig(dtype="bf61"), "dtype: must be one of auto, fp32, float32, bf16, bfloat16, fp16, "
                                            "float16, got 'bf61'"),
    (lambda: EvalStageConfig(qa_max_new_tokens=0), "qa_max_new_tokens: must be at least 1, got 0"),
])
def test_stage_values_are_checked_in_python_too(build, message):
    with pytest.raises(ConfigError, match="^[A-Za-z]+Config: " + message.replace(".", r"\.")):
        build()


def test_serve_chat_ppl_merge_qa_values_are_checked():
    from subjectlm.eval.ppl import PPLConfig
    from subjectlm.eval.qa.runner import QAConfig
    from subjectlm.merge.config import MergeConfig
    from subjectlm.serve.chat import ChatConfig
    from subjectlm.serve.server import ServeConfig

    with pytest.raises(ConfigError, match="^ServeConfig: backend: must be one of auto, hf, llamacpp, vllm, openai, got 'tgi'$"):
        ServeConfig(backend="tgi")
    with pytest.raises(ConfigError, match="^ServeConfig: n_ctx: must be at least 1, got 0$"):
        ServeConfig(n_ctx=0)
    with pytest.raises(ConfigError, match="^ServeConfig: max_queue: must be at least 0, got -1$"):
        ServeConfig(max_queue=-1)
    assert ServeConfig(max_queue=0).max_queue == 0
    with pytest.raises(ConfigError, match="^ChatConfig: max_tokens: must be at least 1, got 0$"):
        ChatConfig(max_tokens=0)
    with pytest.raises(ConfigError, match="^PPLConfig: max_length: must be at least 2, got 1$"):
        PPLConfig(data=["a.txt"], max_length=1)
    with pytest.raises(ConfigError, match="^MergeConfig: dtype: must be one of auto, fp32, .*, got 'fp8'$"):
        MergeConfig(base="default", lora=["a"], output_dir="o", dtype="fp8")
    with pytest.raises(ConfigError, match="^QAConfig: chat: must be one of auto, on, off, got 'yes'$"):
        QAConfig(data="qa.jsonl", chat="yes")


@pytest.mark.parametrize(("argv", "listed"), [
    (["export", "gguf"], ["--outtype {f32,f16,bf16,q8_0}", "--converter {auto,subjectlm,llama.cpp}"]),
    (["export", "lora"], ["--outtype {f16,f32}"]),
    (["serve"], ["--backend {auto,hf,llamacpp,vllm,openai}", "(at least 1)"]),
    (["chat"], ["--backend {auto,hf,llamacpp,vllm,openai}", "(at least 1)"]),
    (["eval", "exam"], ["--scoring {", "--dtype {auto,fp32,float32,bf16,bfloat16,fp16,float16}"]),
    (["eval", "arena", "judge"], ["--judge_mode {score,generate}"]),
    (["eval", "arena", "generate"], ["--dtype {auto,", "(at least 1)"]),
])
def test_help_lists_the_allowed_values(argv, listed, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args([*argv, "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for item in listed:
        assert " ".join(item.split()) in text, (argv, item)
