"""Recipes: stages in order, outputs feeding the next stage, finished stages skipped, bad keys named."""

from __future__ import annotations

import dataclasses

import pytest

from subjectlm import recipe
from subjectlm.config import ConfigError, option


@dataclasses.dataclass
class FakeTrainConfig:
    model: str = option("default")
    data: str = option("")
    output_dir: str = option("")
    peft_path: str | None = option(None)
    steps: int = option(1)


@dataclasses.dataclass
class FakeMergeConfig:
    base: str = option("")
    lora: list[str] = option([])
    output_dir: str = option("")


def fake_stages(calls):
    def train(cfg):
        calls.append(("train", cfg))
        from pathlib import Path

        Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
        return {"adapter": cfg.output_dir, "summary": f"trained {cfg.steps} steps"}

    def merge(cfg):
        calls.append(("merge", cfg))
        from pathlib import Path

        Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
        return {"model": cfg.output_dir, "summary": "merged"}

    return {"pt": lambda: (FakeTrainConfig, train), "sft": lambda: (FakeTrainConfig, train), "merge": lambda: (FakeMergeConfig, merge)}


def test_stages_feed_each_other_and_rerun_is_skipped(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(recipe, "STAGES", {**recipe.STAGES, **fake_stages(calls)})
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "c.txt").write_text("x\n")
    path = tmp_path / "r.yaml"
    path.write_text("model: default\noutput_dir: out\nstages:\n"
                    "  - {stage: pt, data: data/c.txt, steps: 2}\n"
                    "  - {stage: sft, data: data/c.txt}\n"
                    "  - {stage: merge}\n")
    outcomes = recipe.run_recipe(path, log=lambda *_: None)
    assert [o.status for o in outcomes] == ["done", "done", "done"]
    pt_cfg, sft_cfg, merge_cfg = (c[1] for c in calls)
    assert pt_cfg.data == str(tmp_path / "data" / "c.txt") and pt_cfg.model == "default"
    assert pt_cfg.output_dir == str(tmp_path / "out" / "pt")
    assert sft_cfg.peft_path == str(tmp_path / "out" / "pt")  # sft continues the pt adapter
    assert merge_cfg.base == "default" and merge_cfg.lora == [str(tmp_path / "out" / "sft")]
    calls.clear()
    outcomes = recipe.run_recipe(path, log=lambda *_: None)
    assert [o.status for o in outcomes] == ["skipped"] * 3 and calls == []
    outcomes = recipe.run_recipe(path, force=True, log=lambda *_: None)
    assert [o.status for o in outcomes] == ["done"] * 3


def test_changed_config_reruns_stage(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(recipe, "STAGES", {**recipe.STAGES, **fake_stages(calls)})
    path = tmp_path / "r.yaml"
    path.write_text("output_dir: out\nstages:\n  - {stage: pt, steps: 1}\n")
    recipe.run_recipe(path, log=lambda *_: None)
    path.write_text("output_dir: out\nstages:\n  - {stage: pt, steps: 3}\n")
    assert [o.status for o in recipe.run_recipe(path, log=lambda *_: None)] == ["done"]


@pytest.mark.parametrize("text,message", [
    ("stages: []\n", "stages: must be a non-empty list"),
    ("modle: x\nstages: [{stage: pt}]\n", "unknown recipe key 'modle'"),
    ("stages: [{stage: pretrain}]\n", r"stages\[0\]: stage: unknown stage 'pretrain'"),
    ("stages: [{data: x}]\n", r"stages\[0\]: each stage needs a `stage:` key"),
    ("stages: [{stage: pt}, {stage: pt}]\n", r"stages\[1\]: name: 'pt' is used twice"),
])
def test_bad_recipe_names_the_key(tmp_path, text, message):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        recipe.load_recipe(path)


def test_unknown_stage_key_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(recipe, "STAGES", {**recipe.STAGES, **fake_stages([])})
    path = tmp_path / "r.yaml"
    path.write_text("stages:\n  - {stage: pt, lora_rnak: 3}\n")
    with pytest.raises(ConfigError, match="stage 'pt'.*unknown key 'lora_rnak'"):
        recipe.run_recipe(path, log=lambda *_: None)


def test_not_landed_stage_is_reported(tmp_path, monkeypatch):
    def missing():
        raise ModuleNotFoundError("No module named 'subjectlm.nothing'", name="subjectlm.nothing")

    monkeypatch.setattr(recipe, "STAGES", {**recipe.STAGES, "export": missing})
    path = tmp_path / "r.yaml"
    path.write_text("stages:\n  - {stage: export}\n")
    assert [o.status for o in recipe.run_recipe(path, log=lambda *_: None)] == ["not implemented"]
