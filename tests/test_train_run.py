"""The pt/sft commands end to end on a tiny model: outputs, refusal, resume after SIGKILL, torchrun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from subjectlm.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sft_file(tmp_path_factory) -> Path:
    records = [{"instruction": f"Question {i}: what is {i} plus {i}?" + " please" * (i % 5),
                "input": "", "output": f"{i} plus {i} is {2 * i}." + " Indeed." * (i % 3)} for i in range(12)]
    path = tmp_path_factory.mktemp("sft") / "train.json"
    path.write_text(json.dumps(records))
    return path


def _flags(model: Path, data: Path, out: Path, **extra) -> list[str]:
    values = {"model": model, "data": data, "output_dir": out, "max_steps": 6, "save_steps": 2,
              "per_device_train_batch_size": 2, "logging_steps": 1, "learning_rate": 1e-3, "lora_rank": 4,
              "max_seq_length": 64, "report_to": "none", "warmup_ratio": 0, **extra}
    return [part for k, v in values.items() for part in (f"--{k}", str(v))]


def _losses(path: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in map(json.loads, path.read_text().splitlines()) if "loss" in r}


def _adapter(path: Path):
    from safetensors.torch import load_file

    return load_file(str(path / "adapter_model.safetensors"))


def test_help_lists_the_seed_flags(capsys):
    for command in ("pt", "sft"):
        with pytest.raises(SystemExit) as exc:
            main([command, "--help"])
        assert exc.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--model_name_or_path", "--dataset_dir", "--lora_rank", "--lora_trainable", "--modules_to_save",
                 "--block_size", "--max_seq_length", "--packing", "--template", "--resume", "--torch_dtype"):
        assert flag in text


def test_existing_output_dir_is_refused(tmp_path, sft_file, tiny_llama_dir, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["sft", *_flags(tiny_llama_dir, sft_file, out)]) == 2
    assert "pass --overwrite to replace it or --resume to continue it" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"


def test_sft_writes_all_outputs_and_resume_after_sigkill_equals_uninterrupted(tmp_path, sft_file, tiny_llama_dir):
    full, killed = tmp_path / "full", tmp_path / "killed"
    assert main(["sft", *_flags(tiny_llama_dir, sft_file, full)]) == 0
    for name in ("adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "train_config.json",
                 "metrics.jsonl", "loss.png", "train_summary.json"):
        assert (full / name).is_file(), name
    assert (full / "checkpoints" / "checkpoint-6").is_dir()

    # The same run, killed with SIGKILL right after its step-4 checkpoint is complete.
    script = """
import os, signal, sys
from transformers import TrainerCallback
from subjectlm.config import add_config_arguments, config_from_args
from subjectlm.train.config import SFTConfig
from subjectlm.train import sft
import argparse
class Kill(TrainerCallback):
    def on_save(self, args, state, control, **kw):
        if state.global_step == 4:
            os.kill(os.getpid(), signal.SIGKILL)
p = argparse.ArgumentParser(); add_config_arguments(p, SFTConfig)
sft.run(config_from_args(SFTConfig, p.parse_args(sys.argv[1:])), callbacks=[Kill()])
"""
    proc = subprocess.run([sys.executable, "-c", script, *_flags(tiny_llama_dir, sft_file, killed)],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    before = _losses(killed / "metrics.jsonl")
    assert max(before) >= 4 and not (killed / "adapter_model.safetensors").exists()

    assert main(["sft", *_flags(tiny_llama_dir, sft_file, killed), "--resume"]) == 0
    after = _losses(killed / "metrics.jsonl")
    reference = _losses(full / "metrics.jsonl")
    assert sorted(after) == sorted(reference) == [1, 2, 3, 4, 5, 6]
    for step in range(1, 7):
        assert after[step] == pytest.approx(reference[step], abs=1e-6), step
    for step in before:
        assert before[step] == pytest.approx(reference[step], abs=1e-6), step
    a, b = _adapter(full), _adapter(killed)
    assert set(a) == set(b)
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-5


def test_torchrun_two_processes_give_the_one_process_step1_loss(tmp_path, sft_file, tiny_llama_dir):
    common = {"max_steps": 1, "lora_dropout": 0.0}
    one, two = tmp_path / "one", tmp_path / "two"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "subjectlm", "sft",
                    *_flags(tiny_llama_dir, sft_file, one, **common, per_device_train_batch_size=4)],
                   check=True, capture_output=True, env=env, timeout=300)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", "29533", "-m", "subjectlm", "sft",
                           *_flags(tiny_llama_dir, sft_file, two, **common, per_device_train_batch_size=2)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _losses(two / "metrics.jsonl")[1] == pytest.approx(_losses(one / "metrics.jsonl")[1], abs=1e-4)


def test_pt_trains_on_blocks_with_validation(tmp_path, tiny_llama_dir):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(f"Document {i} talks about rocks and minerals number {i}." * 3 for i in range(30)))
    out = tmp_path / "pt"
    assert main(["pt", "--model", str(tiny_llama_dir), "--data", str(corpus), "--output_dir", str(out),
                 "--block_size", "32", "--max_steps", "3", "--per_device_train_batch_size", "2",
                 "--validation_split_percentage", "10", "--eval_steps", "3", "--logging_steps", "1",
                 "--report_to", "none"]) == 0
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3]
    assert any("eval_loss" in r for r in rows)
    assert (out / "adapter_model.safetensors").is_file()
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["trained_tokens"] == 3 * 2 * 31  # every block position but the first is a target

    # sft continues the pt adapter (as the recipe does): its rank and weights carry over.
    records = tmp_path / "sft.jsonl"
    records.write_text(json.dumps({"instruction": "What are rocks?", "output": "Minerals, mostly."}) + "\n")
    sft_out = tmp_path / "sft"
    assert main(["sft", "--model", str(tiny_llama_dir), "--data", str(records), "--output_dir", str(sft_out),
                 "--peft_path", str(out), "--lora_rank", "4", "--max_steps", "1", "--learning_rate", "0",
                 "--report_to", "none"]) == 0
    assert json.loads((sft_out / "adapter_config.json").read_text())["r"] == 8
    a, b = _adapter(out), _adapter(sft_out)
    assert set(a) == set(b) and all(float((a[k] - b[k]).abs().max()) == 0 for k in a)  # lr 0: unchanged


def test_qlora_on_cpu_is_a_clear_error(tmp_path, tiny_llama_dir):
    from subjectlm.config import ConfigError
    from subjectlm.train.config import SFTConfig
    from subjectlm.train.model import load_model_for_training

    config = SFTConfig(model=str(tiny_llama_dir), data=["x.json"], output_dir=str(tmp_path / "o"), load_in_kbits=4)
    with pytest.raises(ConfigError, match="load_in_kbits: 4-bit QLoRA needs a CUDA GPU"):
        load_model_for_training(config, tokenizer=None, packed=True)


def test_streamed_blocks_loop_over_the_corpus(tmp_path, smollm_tokenizer):
    from itertools import islice

    from subjectlm.train.config import PTConfig
    from subjectlm.train.pt import StreamedBlocks
    from subjectlm.train.tokenize import iter_blocks

    corpus = tmp_path / "c.jsonl"
    docs = [f"stream document {i} " * 4 for i in range(5)]
    corpus.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    config = PTConfig(data=[str(corpus)], output_dir=str(tmp_path / "o"), block_size=16, streaming=True, max_steps=3)
    expected = list(iter_blocks(docs, smollm_tokenizer, 16))
    got = [row["input_ids"] for row in islice(StreamedBlocks(config, smollm_tokenizer), 2 * len(expected))]
    assert got == expected + expected  # a second pass starts over once the corpus runs out


@pytest.mark.parametrize("mode", ["selective", "full"])
def test_gradient_checkpointing_leaves_the_losses_unchanged(tmp_path, sft_file, tiny_llama_dir, mode):
    """Packed batches through the Trainer: checkpointing trades memory for time, never the numbers."""
    common = {"max_steps": 3, "save_steps": 100}
    plain, checkpointed = tmp_path / "plain", tmp_path / mode
    assert main(["sft", *_flags(tiny_llama_dir, sft_file, plain, **common)]) == 0
    assert main(["sft", *_flags(tiny_llama_dir, sft_file, checkpointed, **common, gradient_checkpointing="true",
                                gradient_checkpointing_mode=mode)]) == 0
    want, got = _losses(plain / "metrics.jsonl"), _losses(checkpointed / "metrics.jsonl")
    assert got.keys() == want.keys() == {1, 2, 3}
    assert all(got[s] == pytest.approx(want[s], abs=1e-5) for s in want)


def test_sft_resizes_the_vocabulary_when_the_tokenizer_grew(tmp_path, tiny_llama_untied_dir):
    """A tokenizer with new tokens: embeddings and head grow to it and are saved, whole, in the adapter."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_untied_dir)
    old_size = len(tokenizer)
    tokenizer.add_tokens(["<kestrel>", "<basalt>"])
    tokenizer.save_pretrained(tmp_path / "tok")
    data = tmp_path / "train.json"
    data.write_text(json.dumps([{"instruction": f"What is <kestrel> {i}?", "input": "", "output": "<basalt> rock."}
                                for i in range(6)]))
    out = tmp_path / "out"
    assert main(["sft", *_flags(tiny_llama_untied_dir, data, out, max_steps=2),
                 "--tokenizer", str(tmp_path / "tok"), "--modules_to_save", "embed_tokens", "lm_head"]) == 0
    adapter = load_file(str(out / "adapter_model.safetensors"))
    embed = [v for k, v in adapter.items() if "embed_tokens" in k]
    head = [v for k, v in adapter.items() if "lm_head" in k]
    assert embed and head and embed[0].shape[0] == head[0].shape[0] == old_size + 2
    assert len(AutoTokenizer.from_pretrained(out)) == old_size + 2  # the grown tokenizer is saved beside it


def test_lora_training_shows_the_user_no_future_warning(tmp_path, tiny_llama_dir):
    """peft reads `is_gradient_checkpointing` when it wraps the model (a new LoRA and a continued one), and
    transformers 5 warns on every read: not the user's concern, so not in their terminal."""
    import warnings

    from subjectlm.models import load_model
    from subjectlm.train.config import SFTConfig
    from subjectlm.train.model import _with_lora

    adapter = tmp_path / "adapter"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        config = SFTConfig(model=str(tiny_llama_dir), data=["unused"], output_dir=str(tmp_path / "o"))
        _with_lora(config, load_model(tiny_llama_dir, dtype="fp32")).save_pretrained(adapter)
        config = SFTConfig(model=str(tiny_llama_dir), data=["unused"], output_dir=str(tmp_path / "o"),
                           peft_path=str(adapter))
        _with_lora(config, load_model(tiny_llama_dir, dtype="fp32"))
    assert not [str(w.message) for w in caught if issubclass(w.category, FutureWarning)]
