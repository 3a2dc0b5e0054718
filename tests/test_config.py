"""Typed configs: defaults in the dataclass, YAML overrides them, flags override YAML, unknown keys are errors."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from subjectlm.config import ConfigError, add_config_arguments, build_config, config_from_args, option


@dataclasses.dataclass
class ExampleConfig:
    model: str = option("default", help="model", aliases=("--model_name_or_path",))
    lora_rank: int = option(8, help="LoRA rank")
    learning_rate: float = option(1e-4, help="lr")
    packing: bool = option(False, help="pack")
    modules_to_save: list[str] = option([], help="modules")
    max_steps: int | None = option(None, help="steps")

    def __post_init__(self):
        if self.lora_rank <= 0:
            raise ConfigError("lora_rank: must be positive")


def parse(argv):
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, ExampleConfig)
    return config_from_args(ExampleConfig, parser.parse_args(argv))


def test_defaults_yaml_then_flags(tmp_path):
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("lora_rank: 16\nlearning_rate: 2.0e-4\nmodules_to_save: [embed_tokens, lm_head]\n")
    assert parse([]) == ExampleConfig()
    cfg = parse([str(yaml_file), "--lora_rank", "32", "--packing"])
    assert cfg == ExampleConfig(lora_rank=32, learning_rate=2e-4, packing=True, modules_to_save=["embed_tokens", "lm_head"])


def test_seed_script_alias_and_comma_lists():
    cfg = parse(["--model_name_or_path", "/m", "--modules_to_save", "embed_tokens,lm_head", "--max_steps", "5", "--packing", "false"])
    assert (cfg.model, cfg.modules_to_save, cfg.max_steps, cfg.packing) == ("/m", ["embed_tokens", "lm_head"], 5, False)


def test_unknown_key_and_bad_type_name_the_key(tmp_path):
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("lora_rnak: 16\n")
    with pytest.raises(ConfigError, match=r"c.yaml: unknown key 'lora_rnak'"):
        parse([str(yaml_file)])
    with pytest.raises(ConfigError, match=r"lora_rank: .*invalid literal"):
        build_config(ExampleConfig, {"lora_rank": "many"})
    with pytest.raises(ConfigError, match="lora_rank: must be positive"):
        build_config(ExampleConfig, {"lora_rank": 0})
    with pytest.raises(ConfigError, match="packing: expected true or false"):
        build_config(ExampleConfig, {"packing": "perhaps"})


@dataclasses.dataclass
class ChoiceConfig:
    dtype: str = option("auto", help="weights dtype", choices=("auto", "fp32", "bf16"))
    subjects: list[str] = option([], help="subjects", choices=("logic", "law"))
    batch_size: int = option(8, help="batch", min=1)
    limit: int | None = option(None, help="limit", min=1)


def test_choices_and_min_are_checked_when_building():
    assert build_config(ChoiceConfig, {"dtype": "bf16", "subjects": "logic,law", "batch_size": "1"}) == ChoiceConfig(
        dtype="bf16", subjects=["logic", "law"], batch_size=1)
    with pytest.raises(ConfigError, match=r"^c.yaml: dtype: must be one of auto, fp32, bf16, got 'bf61'$"):
        build_config(ChoiceConfig, {"dtype": "bf61"}, source="c.yaml")
    with pytest.raises(ConfigError, match=r"subjects: must be one of logic, law, got 'lgoic'"):
        build_config(ChoiceConfig, {"subjects": ["logic", "lgoic"]})
    with pytest.raises(ConfigError, match=r"batch_size: must be at least 1, got 0"):
        build_config(ChoiceConfig, {"batch_size": 0})
    assert build_config(ChoiceConfig, {"limit": None}).limit is None  # an optional field stays optional


def test_help_lists_the_allowed_values():
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, ChoiceConfig)
    text = parser.format_help()
    assert "--dtype {auto,fp32,bf16}" in text
    assert "(one of: auto, fp32, bf16)" in text
    assert "(at least 1)" in text
    args = parser.parse_args(["--dtype", "fp33"])  # argparse passes it on; build_config names the key
    with pytest.raises(ConfigError, match="dtype: must be one of"):
        config_from_args(ChoiceConfig, args)


def test_stage_dtypes_come_from_one_table():
    from subjectlm.arena.config import GenerateConfig
    from subjectlm.eval.exam.runner import ExamConfig
    from subjectlm.eval.ppl import PPLConfig
    from subjectlm.merge.config import MergeConfig
    from subjectlm.models import DTYPE_CHOICES, dtype_name
    from subjectlm.train.config import SFTConfig

    for cls in (ExamConfig, PPLConfig, GenerateConfig, MergeConfig, SFTConfig):
        field = next(f for f in dataclasses.fields(cls) if f.name in ("dtype", "torch_dtype"))
        assert field.metadata["choices"] == DTYPE_CHOICES, cls.__name__
    assert [dtype_name(n) for n in ("bf16", "bfloat16", "fp32", "auto")] == ["bfloat16", "bfloat16", "float32", "auto"]
    # A typo in the exam's dtype is a config error naming the key, not a KeyError deep in model loading.
    with pytest.raises(ConfigError, match=r"command line: dtype: must be one of auto, fp32, float32, bf16"):
        build_config(ExamConfig, {"data": "exam", "dtype": "bf61"}, source="command line")
    with pytest.raises(ConfigError, match="dtype: must be one of"):
        dtype_name("bf61")


def test_a_yaml_key_may_be_a_flag_alias(tmp_path):
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("model_name_or_path: /m\nlora_rank: 4\n")
    assert parse([str(yaml_file)]) == ExampleConfig(model="/m", lora_rank=4)
    with pytest.raises(ConfigError, match=r"model: given twice \(as 'model' and its alias 'model_name_or_path'\)"):
        build_config(ExampleConfig, {"model": "/a", "model_name_or_path": "/b"})
