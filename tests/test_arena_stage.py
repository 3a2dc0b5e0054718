"""The arena recipe stage: base against tuned on tiny models, judged by a tiny model, end to end."""

import json

import pytest

from subjectlm.arena.recipe_stage import ArenaStageConfig, run
from subjectlm.config import ConfigError


def test_stage_runs_generate_judge_results(tmp_path, tiny_llama_dir, tiny_qwen2_dir):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"Question {i}?", "category": c}) + "\n"
                               for i, c in ((1, "recall"), (2, "reasoning"))))
    out = tmp_path / "arena"
    config = ArenaStageConfig(prompts=str(prompts), output_dir=str(out), model=str(tiny_qwen2_dir),
                              base_model=str(tiny_llama_dir), judge=f"model:{tiny_llama_dir}",
                              max_new_tokens=4, n_bootstrap=50)
    result = run(config)
    assert result["summary"].startswith("arena (4 battles, model:")
    assert "base" in result["summary"] and "tuned" in result["summary"]
    assert {p.name for p in out.iterdir()} >= {"prompts.jsonl", "models.json", "answers", "battles.jsonl",
                                               "results.json", "leaderboard.md", "results.html"}
    assert json.loads((out / "models.json").read_text())["tuned"]["path"] == str(tiny_qwen2_dir)
    # A re-run rebuilds the folder (no stale answers after retraining).
    (out / "stale.txt").write_text("x")
    run(config)
    assert not (out / "stale.txt").exists()
    assert len((out / "battles.jsonl").read_text().splitlines()) == 4


def test_stage_config_checks():
    with pytest.raises(ConfigError, match="judge"):
        ArenaStageConfig(prompts="p", output_dir="o", base_model="default", judge="human")
    with pytest.raises(ConfigError, match="base_model"):
        ArenaStageConfig(prompts="p", output_dir="o")
