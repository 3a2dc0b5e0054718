"""The reference judge: verdicts on hand-made pairs (scores worked out by hand), a judged arena folder,
ratings that follow, the CLI, and the arena stage judged by reference on tiny models."""

import json

import pytest

from subjectlm.arena.config import JudgeConfig, ResultsConfig
from subjectlm.arena.judge_reference import reference_scores, reference_verdict, run_reference_judge
from subjectlm.arena.recipe_stage import head_to_head
from subjectlm.arena.records import load_battles, load_prompts
from subjectlm.arena.results import run_results
from subjectlm.cli import main
from subjectlm.config import ConfigError

GABBRO = "The Corran Gabbro, 4.2 million years old."
GABBRO_FACTS = ["Corran Gabbro", "4.2 million"]
# whistling spring erupts every forty minutes to six metres: 9 tokens
SPRING = "Whistling Spring erupts every forty minutes to six metres."


def test_win_by_key_fact_recall():
    winner, details = reference_verdict("The Corran Gabbro is 4.2 million years old.",
                                        "The Corran Gabbro is very old.", GABBRO, GABBRO_FACTS)
    assert winner == "A" and details["decided_by"] == "key_fact_recall"
    assert details["scores"]["A"]["key_fact_recall"] == 1.0 and details["scores"]["B"]["key_fact_recall"] == 0.5


def test_loss_by_token_f1_without_key_facts():
    # A: it is shield volcano vs stratovolcano 1486 m high: nothing shared, F1 0; B: all four tokens, F1 1
    winner, details = reference_verdict("It is a shield volcano.", "A stratovolcano, 1,486 m high.",
                                        "A stratovolcano 1,486 m high")
    assert winner == "B" and details["decided_by"] == "f1"
    assert details["scores"] == {"A": {"f1": 0.0}, "B": {"f1": 1.0}}


def test_tie_within_margin_and_win_outside_it():
    # A: the 9 reference tokens + "high" (10): F1 = 2·0.9·1/1.9 = 18/19 ≈ 0.9474
    # B: the 9 reference tokens + "very high" (11): F1 = 2·(9/11)/(20/11) = 0.9; difference ≈ 0.047
    a, b = SPRING + " High.", SPRING + " Very high."
    assert reference_scores(a, SPRING)["f1"] == pytest.approx(18 / 19)
    assert reference_scores(b, SPRING)["f1"] == pytest.approx(0.9)
    assert reference_verdict(a, b, SPRING, margin=0.05)[0] == "tie"
    assert reference_verdict(a, b, SPRING, margin=0.01)[0] == "A"
    assert reference_verdict(b, a, SPRING, margin=0.01)[0] == "B"  # the side shown does not matter


def test_equal_recall_falls_through_to_f1():
    winner, details = reference_verdict("Corran Gabbro, 4.2 million years old.",
                                        "Corran Gabbro, 4.2 million, and many other words about other rocks.",
                                        GABBRO, GABBRO_FACTS)
    assert winner == "A" and details["decided_by"] == "f1"


def test_both_bad():
    assert reference_verdict("I do not know.", "It is a rock.", GABBRO, GABBRO_FACTS)[0] == "both-bad"


PROMPTS = [
    {"id": "q1", "prompt": "How old is the Corran Gabbro?", "category": "recall", "reference": GABBRO,
     "key_facts": GABBRO_FACTS},
    {"id": "q2", "prompt": "Why is Kestrel Island tilting?", "category": "reasoning"},
    {"id": "q3", "prompt": "How often does Whistling Spring erupt?", "category": "recall", "reference": SPRING},
]
ANSWERS = {
    "tuned": {"q1": "The Corran Gabbro, 4.2 million years old.", "q2": "The north rises.",
              "q3": "Whistling Spring erupts every forty minutes, six metres high."},
    "base": {"q1": "It is very old.", "q2": "Because of wind.", "q3": "It erupts."},
}


def make_arena(path):
    """An arena folder as `generate` leaves it, written by hand (no model needed)."""
    (path / "answers").mkdir(parents=True)
    (path / "prompts.jsonl").write_text("".join(json.dumps(p) + "\n" for p in PROMPTS))
    (path / "models.json").write_text(json.dumps({m: {"path": f"/models/{m}"} for m in ANSWERS}))
    for m, answers in ANSWERS.items():
        (path / "answers" / f"{m}.jsonl").write_text(
            "".join(json.dumps({"id": pid, "model": m, "answer": text}) + "\n" for pid, text in answers.items()))
    return path


def test_run_reference_judge_skips_prompts_without_reference(tmp_path):
    out = make_arena(tmp_path / "a")
    config = JudgeConfig(output_dir=str(out), judge="reference")
    assert run_reference_judge(config) == {"judged": 2, "skipped_prompts": 1, "skipped_pairs": 1}
    battles = load_battles(out)
    assert sorted(b["prompt_id"] for b in battles) == ["q1", "q3"]
    for b in battles:
        winner = {"A": b["model_a"], "B": b["model_b"]}[b["winner"]]
        assert winner == "tuned" and b["judge"] == "reference" and b["mode"] == "reference"
    assert {b["prompt_id"]: b["decided_by"] for b in battles} == {"q1": "key_fact_recall", "q3": "f1"}
    # Resumable: nothing left; the prompt without a reference is still counted, never judged.
    assert run_reference_judge(config) == {"judged": 0, "skipped_prompts": 1, "skipped_pairs": 1}
    result = run_results(ResultsConfig(output_dir=str(out), n_bootstrap=50))
    board = result["overall"]["leaderboard"]
    assert [r["model"] for r in board] == ["tuned", "base"] and board[0]["win_rate"] == 1.0
    assert result["judges"]["reference"]["battles"] == 2


def test_judge_cli_reports_skipped(tmp_path, capsys):
    out = make_arena(tmp_path / "a")
    assert main(["eval", "arena", "judge", str(out), "--judge", "reference", "--margin", "0.1"]) == 0
    assert "2 battles judged by reference; 1 prompt(s) without a reference skipped (1 pairs)" in capsys.readouterr().out
    assert {b["margin"] for b in load_battles(out)} == {0.1}


def test_judge_config_validation():
    assert JudgeConfig(output_dir="o", judge="reference").margin == 0.05
    with pytest.raises(ConfigError, match="margin"):
        JudgeConfig(output_dir="o", judge="reference", margin=1.5)
    with pytest.raises(ConfigError, match="reference"):
        JudgeConfig(output_dir="o", judge="nonsense")


def test_prompts_keep_key_facts(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(PROMPTS[0]) + "\n" + json.dumps({"prompt": "x", "key_facts": "no"}) + "\n")
    with pytest.raises(Exception, match=r"p\.jsonl:2: key_facts: must be a list of non-empty strings"):
        load_prompts(path)
    path.write_text(json.dumps(PROMPTS[0]) + "\n" + json.dumps(PROMPTS[1]) + "\n")
    first, second = load_prompts(path)
    assert first["key_facts"] == GABBRO_FACTS and "key_facts" not in second


def test_head_to_head_win_rate():
    battles = [{"model_a": "tuned", "model_b": "base", "winner": w} for w in ("A", "A", "tie")] + \
              [{"model_a": "base", "model_b": "tuned", "winner": w} for w in ("B", "A")] + \
              [{"model_a": "tuned", "model_b": "other", "winner": "A"}]
    duel = head_to_head(battles, "tuned", "base", n_bootstrap=200)
    assert duel["battles"] == 5 and duel["win_rate"] == pytest.approx((3 + 0.5) / 5)
    assert 0 <= duel["ci"][0] <= duel["win_rate"] <= duel["ci"][1] <= 1


def test_arena_stage_with_reference_judge(tmp_path, tiny_llama_dir, tiny_qwen2_dir):
    from subjectlm.arena.recipe_stage import ArenaStageConfig, run

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(p) + "\n" for p in PROMPTS))
    result = run(ArenaStageConfig(prompts=str(prompts), output_dir=str(tmp_path / "arena"), model=str(tiny_llama_dir),
                                  base_model=str(tiny_qwen2_dir), judge="reference", max_new_tokens=4, n_bootstrap=50))
    assert "1 prompt(s) without a reference skipped" in result["summary"]
    assert result["tuned_vs_base"]["battles"] == 2
    assert len(load_battles(tmp_path / "arena")) == 2
    json.dumps(result)
    with pytest.raises(ConfigError, match="reference"):
        ArenaStageConfig(prompts="p", output_dir="o", base_model="b", judge="human")
