"""The old scripts' flags one by one: how they parse, and what they set in the Trainer and the tokenizer."""

from __future__ import annotations

import pytest

from subjectlm.cli import build_parser
from subjectlm.compat.cla3.flags import ExamFlags, OldScriptFlags, exam_config
from subjectlm.config import config_from_args
from subjectlm.eval.exam.runner import ExamConfig
from subjectlm.train.config import PTConfig, SFTConfig

BASE = ["--model", "m", "--data", "d.json", "--output_dir", "o"]


def _sft(*flags: str) -> SFTConfig:
    return config_from_args(SFTConfig, build_parser().parse_args(["sft", *BASE, *flags]))


@pytest.mark.parametrize("flags, expected", [
    (["--do_train"], True), (["--do_train", "True"], True), (["--do_train", "TRUE"], True),
    (["--do_train", "true"], True), ([], None),
])
def test_a_bool_flag_stands_alone_or_takes_true_false_in_any_case(flags, expected):
    assert _sft(*flags).do_train is expected


@pytest.mark.parametrize("value, expected", [("False", False), ("FALSE", False), ("false", False), ("True", True)])
def test_false_is_false(value, expected):
    config = _sft("--ddp_find_unused_parameters", value, "--bf16", value, "--logging_first_step", value)
    assert (config.ddp_find_unused_parameters, config.bf16, config.logging_first_step) == (expected,) * 3


def test_evaluation_strategy_is_eval_strategy():
    assert _sft("--evaluation_strategy", "epoch").eval_strategy == "epoch"
    assert _sft("--eval_strategy", "no").eval_strategy == "no"


def test_a_strategy_outside_the_trainers_is_an_error():
    from subjectlm.config import ConfigError

    with pytest.raises(ConfigError, match="save_strategy"):
        _sft("--save_strategy", "sometimes")


def test_the_trainer_gets_the_flags():
    from subjectlm.train.trainer import training_arguments

    config = _sft("--logging_strategy", "epoch", "--save_strategy", "no", "--evaluation_strategy", "epoch",
                  "--logging_first_step", "False", "--ddp_find_unused_parameters", "True", "--validation_file", "v.json",
                  "--report_to", "none", "--output_dir", "/tmp/subjectlm-test-legacy-flags")
    args = training_arguments(config, has_eval=True, group_by_length=False)
    assert (args.logging_strategy, args.save_strategy, args.eval_strategy) == ("epoch", "no", "epoch")
    assert args.logging_first_step is False and args.ddp_find_unused_parameters is True
    off = _sft("--validation_file", "v.json", "--do_eval", "False", "--report_to", "none",
               "--output_dir", "/tmp/subjectlm-test-legacy-flags")
    assert training_arguments(off, has_eval=True, group_by_length=False).eval_strategy == "no"


def test_notes_name_each_flag_that_changes_nothing():
    assert _sft().notes() == []
    notes = _sft("--do_train", "--low_cpu_mem_usage").notes()
    assert len(notes) == 2 and all(n.startswith("note: --") and "changes nothing here" in n for n in notes)


def test_pt_do_eval_accepts_a_validation_split():
    args = build_parser().parse_args(["pt", *BASE, "--do_eval", "--validation_split_percentage", "0.001"])
    assert config_from_args(PTConfig, args).do_eval is True


def test_data_cache_dir_is_where_the_cache_goes(tmp_path):
    from subjectlm.train.tokenize import cache_dir

    assert cache_dir(str(tmp_path / "c")) == tmp_path / "c"
    assert cache_dir().name == "tokenized"


def test_worker_processes_tokenize_exactly_as_one(smollm_tokenizer):
    from subjectlm.train.tokenize import iter_blocks, tokenize_sft

    docs = [f"Document {i}: " + "the Selkie Sandstone is dune sand. " * (i % 7 + 1) for i in range(40)]
    one = list(iter_blocks(docs, smollm_tokenizer, 16, batch=4))
    assert list(iter_blocks(docs, smollm_tokenizer, 16, batch=4, num_proc=2)) == one and one

    class Conv:
        def __init__(self, i):
            self.messages = [{"role": "user", "content": f"What is {i} + {i}?"},
                             {"role": "assistant", "content": f"{2 * i}." + " Indeed." * (i % 4)}]
            self.source = f"t.json:{i}"

    convs = [Conv(i) for i in range(24)]
    rows1, stats1 = tokenize_sft(convs, smollm_tokenizer, "chatml", 24, progress=False)
    rows2, stats2 = tokenize_sft(convs, smollm_tokenizer, "chatml", 24, progress=False, num_proc=2)
    assert rows1 == rows2 and stats1 == stats2 and stats1.truncated > 0


# ---- eval exam


def _exam_and_old_flags(*flags: str) -> tuple[ExamConfig, OldScriptFlags]:
    """What `eval exam` builds from these flags: the ExamConfig, after the old flags were translated."""
    return exam_config(config_from_args(ExamFlags, build_parser().parse_args(["eval", "exam", "--data", "x", *flags])))


def _exam(*flags: str) -> ExamConfig:
    return _exam_and_old_flags(*flags)[0]


@pytest.mark.parametrize("flags, shots", [
    (["--few_shot", "False", "--ntrain", "5"], 0),
    (["--ntrain", "5", "--few_shot", "False"], 0),
    (["--few_shot", "True", "--ntrain", "3"], 3),
    (["--few_shot", "True", "-k", "-1"], -1),
    (["--shots", "2"], 2),
    ([], 5),
])
def test_few_shot_switches_and_ntrain_counts(flags, shots):
    assert _exam(*flags).shots == shots


def test_do_test_is_the_test_split():
    assert _exam("--do_test", "True").split == "test"
    assert _exam("--do_test", "False").split == "val"


def test_cla3_with_cot_is_an_error():
    from subjectlm.config import ConfigError

    with pytest.raises(ConfigError, match="prompt_style"):
        _exam("--prompt_style", "cla3", "--cot")
    with pytest.raises(ConfigError, match="hf backend"):
        _exam("--prompt_style", "cla3", "--model", "m.gguf")
    with pytest.raises(ConfigError, match="needs --scoring letter"):
        _exam("--prompt_style", "cla3", "--scoring", "both")


def test_old_flags_that_change_nothing_say_so():
    from subjectlm.compat.cla3.flags import notes

    assert notes(_exam_and_old_flags()[1]) == []
    lines = notes(_exam_and_old_flags("--use_flash_attention_2", "--verbose")[1])
    assert len(lines) == 2 and all(line.startswith("note: --") for line in lines)


def test_preprocessing_num_workers_reaches_trl_for_dpo_and_notes_say_where_it_cannot():
    from trl import DPOConfig as TRLDPOConfig

    from subjectlm.train.config import DPOConfig
    from subjectlm.train.trainer import training_arguments

    args = build_parser().parse_args(["dpo", *BASE, "--preprocessing_num_workers", "3", "--report_to", "none",
                                      "--data_cache_dir", "c", "--output_dir", "/tmp/subjectlm-test-legacy-flags"])
    config = config_from_args(DPOConfig, args)
    assert training_arguments(config, has_eval=False, group_by_length=False, cls=TRLDPOConfig).dataset_num_proc == 3
    assert [n.split(":")[1].strip() for n in config.notes()] == ["--data_cache_dir changes nothing for dpo"]
    streamed = config_from_args(PTConfig, build_parser().parse_args(
        ["pt", *BASE, "--streaming", "--max_steps", "2", "--preprocessing_num_workers", "2"]))
    assert len(streamed.notes()) == 1 and "--preprocessing_num_workers" in streamed.notes()[0]
