"""The four Chinese-LLaMA-Alpaca-3 commands, as their scripts and wiki write them, run here with their meaning.

Only the paths (and the scripts' own shell variables: sizes, so that a tiny model trains in seconds)
change; `--max_steps 2` is added to the training runs. Each test then checks what the flags meant
there: notes for the flags that change nothing, the cache where --data_cache_dir says, step 1
logged, zero-shot when --few_shot False, the old take0/ files.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from subjectlm.cli import main

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "data"
TRAINABLE = "q_proj,v_proj,k_proj,o_proj,gate_proj,down_proj,up_proj"


def _metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]


def run_pt_sh(model: Path, dataset_dir: Path, data_cache: Path, output_dir: Path) -> list[str]:
    """scripts/training/run_pt.sh's torchrun line, flag for flag (variables: lr=1e-4, lora_rank=64,
    lora_alpha=128, per_device_train_batch_size=1; block_size and gradient_accumulation_steps made small)."""
    lr, lora_rank, lora_alpha, lora_dropout = "1e-4", "64", "128", "0.05"
    modules_to_save, per_device_train_batch_size, gradient_accumulation_steps, block_size = \
        "embed_tokens,lm_head", "1", "2", "256"
    return [
        "pt",
        "--model_name_or_path", str(model),
        "--tokenizer_name_or_path", str(model),
        "--dataset_dir", str(dataset_dir),
        "--data_cache_dir", str(data_cache),
        "--validation_split_percentage", "0.001",
        "--per_device_train_batch_size", per_device_train_batch_size,
        "--do_train",
        "--low_cpu_mem_usage",
        "--seed", "12345",
        "--bf16",
        "--num_train_epochs", "1",
        "--lr_scheduler_type", "cosine",
        "--learning_rate", lr,
        "--warmup_ratio", "0.05",
        "--weight_decay", "0.01",
        "--logging_strategy", "steps",
        "--logging_steps", "10",
        "--save_strategy", "steps",
        "--save_total_limit", "3",
        "--save_steps", "200",
        "--gradient_accumulation_steps", gradient_accumulation_steps,
        "--preprocessing_num_workers", "8",
        "--block_size", block_size,
        "--output_dir", str(output_dir),
        "--overwrite_output_dir",
        "--ddp_timeout", "30000",
        "--logging_first_step", "True",
        "--lora_rank", lora_rank,
        "--lora_alpha", lora_alpha,
        "--trainable", TRAINABLE,
        "--lora_dropout", lora_dropout,
        "--modules_to_save", modules_to_save,
        "--torch_dtype", "bfloat16",
        "--load_in_kbits", "16",
        "--ddp_find_unused_parameters", "False",
        "--max_steps", "2",  # added
    ]


def run_sft_sh(model: Path, dataset_dir: Path, validation_file: Path, output_dir: Path) -> list[str]:
    """scripts/training/run_sft.sh's torchrun line, flag for flag (max_seq_length and batch sizes as there)."""
    lr, lora_rank, lora_alpha, lora_dropout = "1e-4", "64", "128", "0.05"
    modules_to_save, per_device_train_batch_size, per_device_eval_batch_size = "embed_tokens,lm_head", "1", "1"
    gradient_accumulation_steps, max_seq_length = "2", "512"
    return [
        "sft",
        "--model_name_or_path", str(model),
        "--tokenizer_name_or_path", str(model),
        "--dataset_dir", str(dataset_dir),
        "--per_device_train_batch_size", per_device_train_batch_size,
        "--per_device_eval_batch_size", per_device_eval_batch_size,
        "--do_train",
        "--low_cpu_mem_usage",
        "--do_eval",
        "--seed", "12345",
        "--bf16",
        "--num_train_epochs", "3",
        "--lr_scheduler_type", "cosine",
        "--learning_rate", lr,
        "--warmup_ratio", "0.03",
        "--logging_strategy", "steps",
        "--logging_steps", "10",
        "--save_strategy", "steps",
        "--save_total_limit", "3",
        "--evaluation_strategy", "steps",
        "--eval_steps", "100",
        "--save_steps", "200",
        "--gradient_accumulation_steps", gradient_accumulation_steps,
        "--preprocessing_num_workers", "8",
        "--max_seq_length", max_seq_length,
        "--output_dir", str(output_dir),
        "--overwrite_output_dir",
        "--ddp_timeout", "30000",
        "--logging_first_step", "True",
        "--lora_rank", lora_rank,
        "--lora_alpha", lora_alpha,
        "--trainable", TRAINABLE,
        "--lora_dropout", lora_dropout,
        "--modules_to_save", modules_to_save,
        "--torch_dtype", "bfloat16",
        "--validation_file", str(validation_file),
        "--load_in_kbits", "16",
        "--ddp_find_unused_parameters", "False",
        "--max_steps", "2",  # added
    ]


def eval_py(model_path: Path, output_path: Path, few_shot: str = "False", with_prompt: str = "False",
            ntrain: str = "5", do_save_csv: str = "False", do_test: str = "False") -> list[str]:
    """The wiki's `python eval.py ...` for scripts/ceval (run where data/ and subject_mapping.json are)."""
    return ["eval", "exam",
            "--model_path", str(model_path),
            "--few_shot", few_shot,
            "--with_prompt", with_prompt,
            "--n_times", "1",
            "--ntrain", ntrain,
            "--do_save_csv", do_save_csv,
            "--do_test", do_test,
            "--output_dir", str(output_path)]


# ---- training


def test_run_pt_sh(tiny_llama_untied_dir, tmp_path, capsys):
    out, cache = tmp_path / "pt", tmp_path / "temp_data_cache_dir"
    assert main(run_pt_sh(tiny_llama_untied_dir, EXAMPLES / "corpus", cache, out)) == 0
    printed = capsys.readouterr().out
    assert "note: --do_train changes nothing here" in printed
    assert "note: --low_cpu_mem_usage changes nothing here" in printed
    assert list(cache.glob("pt-*.safetensors")), "the tokenized corpus is cached in --data_cache_dir"
    rows = _metrics(out)
    assert rows[0]["step"] == 1 and "loss" in rows[0]  # --logging_first_step True, though logging_steps is 10
    assert any("eval_loss" in r for r in rows)  # --validation_split_percentage held out a block
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert (adapter["r"], adapter["lora_alpha"]) == (64, 128)
    assert set(adapter["target_modules"]) == set(TRAINABLE.split(","))
    assert set(adapter["modules_to_save"]) >= {"embed_tokens", "lm_head"}
    config = json.loads((out / "train_config.json").read_text())
    assert (config["seed"], config["bf16"], config["weight_decay"], config["warmup_ratio"]) == (12345, True, 0.01, 0.05)
    assert config["preprocessing_num_workers"] == 8 and config["data_cache_dir"] == str(cache)


@pytest.fixture(scope="module")
def sft_run(tiny_llama_untied_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("cla3-sft")
    validation = root / "validation.json"
    validation.write_text(json.dumps([{"instruction": "凯斯特雷尔岛在哪里？", "output": "在北海。"},
                                      {"instruction": "What is the Selkie Sandstone?", "output": "Dune sand."}],
                                     ensure_ascii=False))
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(run_sft_sh(tiny_llama_untied_dir, EXAMPLES / "sft", validation, root / "sft"))
    return code, root / "sft", buffer.getvalue()


def test_run_sft_sh(sft_run):
    code, out, printed = sft_run
    assert code == 0
    assert "note: --do_train changes nothing here" in printed
    rows = _metrics(out)
    assert rows[0]["step"] == 1 and "loss" in rows[0]
    assert any("eval_loss" in r for r in rows)  # --do_eval with --validation_file
    assert (out / "adapter_model.safetensors").is_file()
    config = json.loads((out / "train_config.json").read_text())
    assert (config["eval_strategy"], config["eval_steps"], config["max_seq_length"]) == ("steps", 100, 512)


def test_do_eval_false_skips_evaluation_and_do_train_false_is_refused(tiny_llama_untied_dir, tmp_path, capsys):
    from subjectlm.cli import build_parser
    from subjectlm.config import config_from_args
    from subjectlm.train.config import SFTConfig

    args = build_parser().parse_args(["sft", "--model", str(tiny_llama_untied_dir), "--data", "x.json",
                                      "--output_dir", "o", "--do_eval", "FALSE"])
    assert config_from_args(SFTConfig, args).do_eval is False
    assert main(["sft", "--model", str(tiny_llama_untied_dir), "--data", str(EXAMPLES / "sft"),
                 "--output_dir", str(tmp_path / "o"), "--do_train", "false"]) == 2
    assert "do_train: `subjectlm pt|sft|dpo` always trains" in capsys.readouterr().err
    assert main(["sft", "--model", str(tiny_llama_untied_dir), "--data", str(EXAMPLES / "sft"),
                 "--output_dir", str(tmp_path / "o"), "--do_eval"]) == 2
    assert "do_eval: there is no validation data" in capsys.readouterr().err


# ---- merge


def test_merge_script_command(sft_run, tiny_llama_untied_dir, tmp_path, capsys):
    """merge_llama3_with_chinese_lora_low_mem.py --base_model --lora_model --output_type huggingface --output_dir."""
    _, adapter, _ = sft_run
    out = tmp_path / "merged"
    assert main(["merge", "--base_model", str(tiny_llama_untied_dir), "--lora_model", str(adapter),
                 "--output_type", "huggingface", "--output_dir", str(out)]) == 0
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    capsys.readouterr()
    assert main(["merge", "--base_model", str(tiny_llama_untied_dir), "--lora_model", str(adapter),
                 "--output_type", "huggingface", "--output_dir", str(tmp_path / "verbose"), "--verbose"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any("model.layers.0.self_attn.q_proj.weight" in ln and "lora from" in ln for ln in lines)
    assert any("lm_head.weight" in ln and "replace from" in ln for ln in lines)  # modules_to_save
    assert any(ln.endswith(": copied") for ln in lines)  # e.g. the norms


def test_merge_pth_is_a_clear_error(sft_run, tiny_llama_untied_dir, tmp_path, capsys):
    _, adapter, _ = sft_run
    assert main(["merge", "--base_model", str(tiny_llama_untied_dir), "--lora_model", str(adapter),
                 "--output_type", "pth", "--output_dir", str(tmp_path / "pth")]) == 2
    err = capsys.readouterr().err
    assert "error: output_type: pth" in err and "not written" in err and "pickle" in err
    assert not (tmp_path / "pth").exists()


# ---- eval


@pytest.fixture()
def old_layout(tmp_path, monkeypatch) -> Path:
    """What `unzip ceval-exam.zip -d data` plus the script's subject_mapping.json leave, as the working dir."""
    exam = EXAMPLES / "exam"
    for split in ("dev", "val", "test"):
        shutil.copytree(exam / split, tmp_path / "data" / split)
    shutil.copy(exam / "subject_mapping.json", tmp_path / "subject_mapping.json")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _predictions(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]


def test_eval_py_command_is_zero_shot_in_the_old_layout(old_layout, tiny_llama_untied_dir):
    out = old_layout / "out"
    assert main(eval_py(tiny_llama_untied_dir, out)) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["shots"] == 0 and summary["split"] == "val"
    assert summary["subjects"]["kestrel_geology"]["name"] == "凯斯特雷尔岛地质"  # from ./subject_mapping.json
    # zero-shot means exactly what `--shots 0` means here
    assert main(["eval", "exam", "--model", str(tiny_llama_untied_dir), "--data", "data", "--shots", "0",
                 "--output_dir", str(old_layout / "zero")]) == 0
    assert [r["logprobs"] for r in _predictions(out)] == [r["logprobs"] for r in _predictions(old_layout / "zero")]
    # and the flags in the other order too (issue #18: this one failed with "could not convert string to float")
    assert main([*eval_py(tiny_llama_untied_dir, old_layout / "swapped")[:5], "--ntrain", "5", "--few_shot", "False",
                 "--output_dir", str(old_layout / "swapped")]) == 0
    assert json.loads((old_layout / "swapped" / "summary.json").read_text())["shots"] == 0
    # the old files beside ours
    old = json.loads((out / "take0" / "summary.json").read_text())
    n = old["kestrel_geology"]["num"]
    assert n == 64 and old["All"]["num"] == n and set(old["grouped"]) == {"STEM", "Social Science", "Humanities", "Other"}
    assert old["kestrel_geology"]["score"] == pytest.approx(100 * summary["subjects"]["kestrel_geology"]["accuracy"])
    assert sorted(json.loads((out / "take0" / "submission.json").read_text())["kestrel_geology"], key=int) == \
        [str(i) for i in range(n)]
    assert not list((out / "take0").glob("*.csv"))  # --do_save_csv False


def test_few_shot_true_uses_ntrain_shots(old_layout, tiny_llama_untied_dir):
    out = old_layout / "five"
    assert main(eval_py(tiny_llama_untied_dir, out, few_shot="True", ntrain="5")) == 0
    assert json.loads((out / "summary.json").read_text())["shots"] == 5
    assert main(["eval", "exam", "--model", str(tiny_llama_untied_dir), "--data", "data", "-k", "-1",
                 "--output_dir", str(old_layout / "all")]) == 0  # -k -1: every dev row
    assert [r["logprobs"] for r in _predictions(out)] == [r["logprobs"] for r in _predictions(old_layout / "all")]


def test_do_test_and_do_save_csv(old_layout, tiny_llama_untied_dir):
    out = old_layout / "test"
    assert main(eval_py(tiny_llama_untied_dir, out, do_test="True", do_save_csv="True")) == 0
    assert json.loads((out / "summary.json").read_text())["split"] == "test"
    submission = json.loads((out / "take0" / "submission.json").read_text())
    assert len(submission["kestrel_geology"]) == 10 and set(submission["kestrel_geology"].values()) <= set("ABCD")
    assert (out / "submission.json").is_file()  # ours, keyed by the id column
    with open(out / "take0" / "kestrel_geology_test.csv", encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["", "id", "question", "A", "B", "C", "D", "model_output", "correctness"]
    assert len(rows) == 11 and all(r[-2] in "ABCD" and r[-1] == "0" for r in rows[1:])


def test_cla3_style_runs_the_old_scoring(old_layout, tiny_llama_untied_dir, capsys):
    out = old_layout / "cla3"
    assert main([*eval_py(tiny_llama_untied_dir, out, few_shot="True", with_prompt="True", do_save_csv="True"),
                 "--prompt_style", "cla3", "--verbose", "--limit", "16"]) == 0
    records = _predictions(out)
    assert len(records) == 16 and all(set(r["scores"]) == set("ABCD") for r in records)
    for r in records:
        assert r["prediction"] == max(r["scores"], key=r["scores"].get)
    assert "好的，我会结合凯斯特雷尔岛地质相关知识回答" in capsys.readouterr().out  # --verbose prints the prompt
    with open(out / "take0" / "kestrel_geology_test.csv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["model_output"] for r in rows] == [r["response"] for r in records]
    assert [int(r["correctness"]) for r in rows] == [int(r["correct"]) for r in records]


def test_no_data_outside_the_old_layout_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["eval", "exam", "--model_path", "default", "--output_dir", "o"]) == 2
    assert "subject_mapping.json in the working directory" in capsys.readouterr().err
