"""The old script's keys in a recipe's eval stage (compat/cla3/recipe_stage.py): they reach the exam, and the
stage writes the old take{K}/ files beside its exam run, as it did before the keys moved out of eval/."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from subjectlm.compat.cla3.recipe_stage import EvalStageFlags
from subjectlm.config import ConfigError
from subjectlm.eval.recipe_stage import EvalStageConfig
from subjectlm.pipeline.plan import plan
from subjectlm.recipe import run_recipe
from test_recipe_run import _exam


def _recipe(root: Path, model: Path, eval_keys: str) -> Path:
    _exam(root / "exam")
    (root / "recipe.yaml").write_text(f"model: {model}\noutput_dir: out\nstages:\n"
                                      "  - stage: eval\n    data: exam\n    shots: 1\n" + eval_keys, encoding="utf-8")
    return root / "recipe.yaml"


def test_few_shot_and_do_save_csv_reach_the_exam_and_write_take0(tmp_path, tiny_llama_dir):
    path = _recipe(tmp_path, tiny_llama_dir, "    few_shot: false\n    do_save_csv: true\n    scoring: letter\n")
    assert [o.status for o in run_recipe(path, log=lambda *_: None)] == ["done"]
    run = tmp_path / "out" / "eval" / "model"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["shots"] == 0 and summary["count"] == 3  # few_shot false: zero-shot, whatever shots says
    old = json.loads((run / "take0" / "summary.json").read_text())
    assert old["geology"]["num"] == 3 and old["All"]["num"] == 3
    assert old["geology"]["score"] == pytest.approx(100 * summary["subjects"]["geology"]["accuracy"])
    assert sorted(json.loads((run / "take0" / "submission.json").read_text())["geology"], key=int) == ["0", "1", "2"]
    with open(run / "take0" / "geology_test.csv", encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["", "id", "question", "A", "B", "C", "D", "answer", "model_output", "correctness"]
    assert len(rows) == 4 and all(r[-2] in "ABCD" for r in rows[1:])
    recorded = json.loads((tmp_path / "out" / "pipeline_state.json").read_text())
    config = recorded["eval"]["config"]
    assert (config["few_shot"], config["shots"], config["do_save_csv"]) == (False, 0, True)  # what ran


def test_without_the_old_keys_take0_is_written_without_csvs(tmp_path, tiny_llama_dir):
    path = _recipe(tmp_path, tiny_llama_dir, "    limit: 1\n")
    assert [o.status for o in run_recipe(path, log=lambda *_: None)] == ["done"]
    run = tmp_path / "out" / "eval" / "model"
    assert json.loads((run / "summary.json").read_text())["shots"] == 1
    assert json.loads((run / "take0" / "summary.json").read_text())["All"]["num"] == 1
    assert not list((run / "take0").glob("*.csv"))


def test_the_old_keys_are_checked_at_their_recipe_line(tmp_path, tiny_llama_dir):
    path = _recipe(tmp_path, tiny_llama_dir, "    do_test: true\n    split: dev\n")
    problems = [str(p) for p in plan(path).problems]
    assert any("recipe.yaml:7:" in p and "do_test: answers the test split; drop --split dev" in p for p in problems)
    path = _recipe(tmp_path, tiny_llama_dir, "    prompt_style: cla3\n")  # the stage scores both ways by default
    assert any("recipe.yaml:7:" in p and "needs --scoring letter" in p for p in map(str, plan(path).problems))


def test_the_stage_config_is_the_eval_stages_with_the_old_keys_translated(tmp_path):
    _exam(tmp_path / "exam")
    config = EvalStageFlags(model="m", data=str(tmp_path / "exam"), shots=3, few_shot=False, do_test=True)
    assert isinstance(config, EvalStageConfig)
    assert (config.shots, config.split, config.scoring) == (0, "test", "both")
    with pytest.raises(ConfigError, match="prompt_style"):
        EvalStageFlags(model="m", data=str(tmp_path / "exam"), prompt_style="old")
