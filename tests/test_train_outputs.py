"""The training output dir: one flag name for its policy (old names kept as aliases) and the final save as
one atomic swap of a staged directory, checked on plain directories and with a real kill -9."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path

import pytest

from subjectlm import io
from subjectlm.config import add_config_arguments, build_config, config_from_args
from subjectlm.train import outputs
from subjectlm.train.config import PTConfig, SFTConfig

BASE = ["--data", "d.json", "--output_dir", "out"]


def _sft(argv: list[str]) -> SFTConfig:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, SFTConfig)
    return config_from_args(SFTConfig, parser.parse_args(argv))


@pytest.mark.parametrize("argv", [["--overwrite"], ["--overwrite_output_dir"], ["--overwrite_output_dir", "true"]])
def test_overwrite_flag_and_its_old_name(argv):
    assert _sft([*BASE, *argv]).overwrite is True
    assert _sft(BASE).overwrite is False


@pytest.mark.parametrize("key", ["overwrite", "overwrite_output_dir"])
def test_overwrite_yaml_key_and_its_old_name(tmp_path, key):
    path = tmp_path / "sft.yaml"
    path.write_text(f"data: d.json\noutput_dir: out\n{key}: true\n")
    assert _sft([str(path)]).overwrite is True
    assert build_config(PTConfig, {"data": ["d"], "output_dir": "o", key: True}).overwrite is True


def test_overwrite_given_under_both_names_is_an_error():
    from subjectlm.config import ConfigError

    with pytest.raises(ConfigError, match="overwrite: given twice"):
        build_config(PTConfig, {"data": ["d"], "output_dir": "o", "overwrite": True, "overwrite_output_dir": True})


def test_overwrite_and_resume_together_is_an_error():
    from subjectlm.config import ConfigError

    with pytest.raises(ConfigError, match="--overwrite"):
        _sft([*BASE, "--overwrite_output_dir", "--resume"])


# ---- the swap on plain directories


def _tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


def _unfinished_run(tmp_path: Path) -> Path:
    """An unfinished run's records in `out`: what is there when the final save starts."""
    out = tmp_path / "out"
    (out / "checkpoints" / "checkpoint-2").mkdir(parents=True)
    (out / "checkpoints" / "checkpoint-2" / "trainer_state.json").write_text("{}")
    (out / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\n')
    return out


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_the_staged_save_becomes_final_and_keeps_the_records(tmp_path, monkeypatch, exchange):
    out = _unfinished_run(tmp_path)
    if not exchange:
        monkeypatch.setattr(io, "exchange_paths", lambda a, b: False)
    metrics_inode = (out / "metrics.jsonl").stat().st_ino
    with io.atomic_dir(out, overwrite=True) as staged:  # as save_final stages it
        (staged / "adapter_model.safetensors").write_text("weights")
        (staged / "train_summary.json").write_text("{}")
        outputs.link_records(out, staged)
    assert _tree(out) == {"adapter_model.safetensors": "weights", "train_summary.json": "{}",
                          "metrics.jsonl": '{"step": 1, "loss": 2.0}\n',
                          "checkpoints/checkpoint-2/trainer_state.json": "{}"}
    assert (out / "metrics.jsonl").stat().st_ino == metrics_inode  # a hard link, not a copy
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # nothing left beside it


# ---- kill -9 during the real final save


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_pt_killed_before_its_final_swap_leaves_no_model_and_resumes(tmp_path, tiny_llama_dir):
    from test_kill import _killed, _ok, _subjectlm

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(f"Paragraph {i} about the basalt cliffs of Kestrel Island." for i in range(8)))

    def args(out: Path) -> list:
        return ["pt", "--model", tiny_llama_dir, "--data", corpus, "--output_dir", out, "--block_size", "32",
                "--max_steps", "2", "--per_device_train_batch_size", "2", "--save_steps", "1", "--lora_rank", "4",
                "--logging_steps", "1", "--report_to", "none", "--lora_dropout", "0"]

    whole, killed = tmp_path / "whole", tmp_path / "killed"
    _ok(_subjectlm(args(whole)))
    # Killed with the whole final save staged beside the output, just before the swap.
    _killed(_subjectlm(args(killed), "import subjectlm.io as IO\nIO.replace_path = _die\n"))
    assert not (killed / "adapter_model.safetensors").exists() and not (killed / "train_summary.json").exists()
    assert (killed / "metrics.jsonl").is_file() and (killed / "checkpoints" / "checkpoint-2").is_dir()
    [staged] = [p for p in tmp_path.iterdir() if p.name.startswith(".killed.tmp-")]  # hidden, beside it
    assert (staged / "adapter_model.safetensors").is_file()
    _ok(_subjectlm([*args(killed), "--resume"]))
    assert not staged.exists()
    assert _sha(killed / "adapter_model.safetensors") == _sha(whole / "adapter_model.safetensors")
    a, b = (json.loads((d / "train_summary.json").read_text()) for d in (whole, killed))
    assert a["steps"] == b["steps"] == 2 and a["final_loss"] == b["final_loss"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert sorted(os.listdir(killed / "checkpoints")) == sorted(os.listdir(whole / "checkpoints"))
