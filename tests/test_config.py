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
