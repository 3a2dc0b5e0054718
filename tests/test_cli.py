"""The CLI: one subcommand per stage, fast help."""

from __future__ import annotations

import subprocess
import sys

import pytest

from subjectlm.cli import COMMANDS, build_parser, main

STAGES = ["model", "data", "synth", "pt", "sft", "dpo", "merge", "eval", "export", "chat", "serve", "run"]


def test_every_stage_is_a_subcommand():
    assert list(COMMANDS) == STAGES
    help_text = build_parser().format_help()
    for name in STAGES:
        assert f"    {name}" in help_text


@pytest.mark.parametrize("name", STAGES)
def test_help_of_every_command(name, capsys):
    with pytest.raises(SystemExit) as info:
        main([name, "--help"])
    assert info.value.code == 0
    assert "usage: subjectlm " + name in capsys.readouterr().out


def test_help_does_not_import_torch():
    code = "import sys; from subjectlm.cli import build_parser; build_parser().format_help(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "usage: subjectlm" in capsys.readouterr().out


@pytest.mark.parametrize("command, flags", [
    (["pt"], ["--data_cache_dir", "--preprocessing_num_workers", "--do_train", "--low_cpu_mem_usage",
              "--logging_strategy", "--save_strategy", "--logging_first_step", "--ddp_find_unused_parameters"]),
    (["sft"], ["--do_eval", "--evaluation_strategy", "--eval_strategy", "--quant_type", "--double_quant"]),
    (["merge"], ["--base_model", "--lora_model", "--output_type", "--verbose"]),
    (["eval", "exam"], ["--model_path", "--few_shot", "--with_prompt", "--n_times", "--ntrain", "-k",
                        "--do_save_csv", "--do_test", "--prompt_style", "--use_flash_attention_2", "--verbose"]),
])
def test_help_lists_the_chinese_llama_alpaca_3_flags(command, flags, capsys):
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    text = capsys.readouterr().out
    for flag in flags:
        assert flag in text, flag
