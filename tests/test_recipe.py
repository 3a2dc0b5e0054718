"""Recipes: stages in order, outputs feeding the next stage, finished stages skipped, bad keys named.

The stages here are stand-ins (plumbing only); test_recipe_run.py runs the real ones on tiny models."""

from __future__ import annotations

import dataclasses

import pytest

from subjectlm.config import ARTIFACT, MODEL, OUTPUT, TRAINING_DATA, ConfigError, option
from subjectlm.pipeline.execute import run_recipe
from subjectlm.pipeline.plan import plan
from subjectlm.pipeline.recipe import load_recipe
from subjectlm.pipeline.stages import STAGE_KINDS, StageKind, model_output, trained_outputs


@dataclasses.dataclass
class FakeTrainConfig:
    model: str = option("default", path=MODEL)
    data: str = option("", path=TRAINING_DATA)
    output_dir: str = option("", path=OUTPUT)
    peft_path: str | None = option(None, path=ARTIFACT)
    steps: int = option(1)


@dataclasses.dataclass
class FakeMergeConfig:
    base: str = option("", path=MODEL)
    lora: list[str] = option([], path=ARTIFACT)
    output_dir: str = option("", path=OUTPUT)


def fake_stages(calls):
    def train(cfg):
        calls.append(("train", cfg))
        from pathlib import Path

        Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
        (Path(cfg.output_dir) / "weights.txt").write_text(f"{cfg.steps} steps on {cfg.data}")  # as a run rewrites
        return {"adapter": cfg.output_dir, "summary": f"trained {cfg.steps} steps"}

    def merge(cfg):
        calls.append(("merge", cfg))
        from pathlib import Path

        Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
        (Path(cfg.output_dir) / "model.txt").write_text(f"{cfg.base} + {cfg.lora}")
        return {"model": cfg.output_dir, "summary": "merged"}

    continues = {"model": "model", "peft_path": "adapter"}
    return {"pt": StageKind(FakeTrainConfig, train, {"model": "model"}, trained_outputs),
            "sft": StageKind(FakeTrainConfig, train, continues, trained_outputs),
            "merge": StageKind(FakeMergeConfig, merge, {"base": "model", "lora": "adapter_list"}, model_output)}


def use_fake_stages(monkeypatch, calls) -> None:
    for kind, entry in fake_stages(calls).items():
        monkeypatch.setitem(STAGE_KINDS, kind, entry)


def test_stages_feed_each_other_and_rerun_is_skipped(tmp_path, monkeypatch):
    calls = []
    use_fake_stages(monkeypatch, calls)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "c.txt").write_text("x\n")
    (tmp_path / "data" / "s.jsonl").write_text('{"instruction": "q", "output": "a"}\n')
    path = tmp_path / "r.yaml"
    path.write_text("model: default\noutput_dir: out\nstages:\n"
                    "  - {stage: pt, data: data/c.txt, steps: 2}\n"
                    "  - {stage: sft, data: data/s.jsonl}\n"
                    "  - {stage: merge}\n")
    outcomes = run_recipe(path, log=lambda *_: None)
    assert [o.status for o in outcomes] == ["done", "done", "done"]
    pt_cfg, sft_cfg, merge_cfg = (c[1] for c in calls)
    assert pt_cfg.data == str(tmp_path / "data" / "c.txt") and pt_cfg.model == "default"
    assert sft_cfg.data == str(tmp_path / "data" / "s.jsonl")
    assert pt_cfg.output_dir == str(tmp_path / "out" / "pt")
    assert sft_cfg.peft_path == str(tmp_path / "out" / "pt")  # sft continues the pt adapter
    assert merge_cfg.base == "default" and merge_cfg.lora == [str(tmp_path / "out" / "sft")]
    calls.clear()
    outcomes = run_recipe(path, log=lambda *_: None)
    assert [o.status for o in outcomes] == ["skipped"] * 3 and calls == []
    assert [s.reason for s in plan(path).steps] == [None, None, None]  # the dry run agrees
    (tmp_path / "data" / "s.jsonl").write_text('{"instruction": "q2", "output": "a2"}\n')
    assert [s.reason for s in plan(path).steps] == [None, "changed: data", "upstream sft runs"]
    assert [o.status for o in run_recipe(path, log=lambda *_: None)] == ["skipped", "done", "done"]
    outcomes = run_recipe(path, force=True, log=lambda *_: None)
    assert [o.status for o in outcomes] == ["done"] * 3
    # --only sft: sft still continues pt's adapter (taken from the finished pt), merge is not run
    calls.clear()
    outcomes = run_recipe(path, force=True, only=["sft"], log=lambda *_: None)
    assert [o.name for o in outcomes] == ["sft"] and calls[0][1].peft_path == str(tmp_path / "out" / "pt")
    # sft's new adapter is what merge reads: the plan says merge runs again, and why
    assert [s.status() for s in plan(path, only=["merge"]).steps] == [
        "not selected (--only)", "not selected (--only)", "run (changed: lora)"]


def test_changed_config_reruns_stage(tmp_path, monkeypatch):
    calls = []
    use_fake_stages(monkeypatch, calls)
    path = tmp_path / "r.yaml"
    path.write_text("output_dir: out\nstages:\n  - {stage: pt, steps: 1}\n")
    run_recipe(path, log=lambda *_: None)
    path.write_text("output_dir: out\nstages:\n  - {stage: pt, steps: 3}\n")
    assert [o.status for o in run_recipe(path, log=lambda *_: None)] == ["done"]


@pytest.mark.parametrize("text,message", [
    ("stages: []\n", "r.yaml:1: stages: must be a non-empty list"),
    ("description: d\nmodle: x\nstages: [{stage: pt}]\n", "r.yaml:2: recipe: unknown recipe key 'modle'"),
    ("stages: [{stage: pretrain}]\n", r"r.yaml:1: stages\[0\]: stage: unknown stage 'pretrain'"),
    ("stages:\n  - data: x\n", r"r.yaml:2: stages\[0\]: each stage needs a `stage:` key"),
    ("stages:\n  - stage: pt\n  - stage: pt\n", r"r.yaml:3: stages\[1\]: name: 'pt' is used twice"),
])
def test_bad_recipe_names_the_line_and_key(tmp_path, text, message):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_recipe(path)


def test_unknown_stage_key_is_an_error(tmp_path, monkeypatch):
    use_fake_stages(monkeypatch, [])
    path = tmp_path / "r.yaml"
    path.write_text("stages:\n  - {stage: pt, lora_rnak: 3}\n")
    with pytest.raises(ConfigError, match="r.yaml:2: stage pt: lora_rnak: unknown key.*no stage was run"):
        run_recipe(path, log=lambda *_: None)


def test_a_broken_stage_import_is_a_traceback(tmp_path, monkeypatch):
    monkeypatch.setitem(STAGE_KINDS, "export", StageKind("subjectlm.nothing:Config", "subjectlm.nothing:run"))
    path = tmp_path / "r.yaml"
    path.write_text("stages:\n  - {stage: export}\n")
    with pytest.raises(ModuleNotFoundError):  # no more "not implemented yet: skipped"
        run_recipe(path, log=lambda *_: None)
