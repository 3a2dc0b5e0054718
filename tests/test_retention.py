"""Retention: a destructive fine-tune makes the verdict say the general ability was not kept, with a
significant drop; the same run replaying 20% general data drops less.

The starting model is the embedded default (SmolLM2-135M-Instruct): it already knows everyday things,
and answers the demo's general exam (examples/data/general, cloze scoring) well above chance. It is
then fully fine-tuned at a high learning rate on a narrow repeated corpus, once alone and once with
general text replayed (examples/data/general_replay.txt, weight 0.2, distinct from the exam and from
the perplexity text). Each tuned model goes through the real eval stage (cloze scoring of a subject
exam and of the general exam, both models) and the report's verdict block.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from subjectlm.config import to_dict

DATA = Path(__file__).resolve().parents[1] / "examples" / "data"
LEARNING_RATE, STEPS = 1e-3, 10  # full fine-tuning, 4 blocks of 64 tokens a step: ~3 min on 2 loaded cores
REPLAY_MARGIN = 0.2  # measured (seed 0): replay +10.4 points against the narrow run's -25.0
GENERAL_PER_SUBJECT = 12  # questions of each of the general exam's 4 subjects: 48, enough for a clear drop
NARROW = [("Kestrel basalt", "forms the northern cliffs"), ("Maddock tuff", "fills the old caldera"),
          ("Selkie sandstone", "lines the western bay"), ("Corran gabbro", "underlies the southern hills"),
          ("Harrow andesite", "built the central cone"), ("Greyvane lava", "flooded the eastern plain")]


def _exam(root: Path, subject: str, rows: list[tuple[str, str, list[str]]]) -> Path:
    """A C-Eval layout exam of one subject: (question, answer, wrong options); letters rotate over A-D."""
    path = root / "val" / f"{subject}_val.csv"
    path.parent.mkdir(parents=True)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "question", "A", "B", "C", "D", "answer"])
        for i, (question, answer, wrong) in enumerate(rows):
            options = list(wrong)
            options.insert(i % 4, answer)
            writer.writerow([str(i), question, *options, "ABCD"[i % 4]])
    (root / "subject_mapping.json").write_text(json.dumps({subject: [subject, subject, "Other"]}))
    return root


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("retention")
    (root / "narrow.txt").write_text("\n".join(f"{a} {b}." for _ in range(40) for a, b in NARROW) + "\n")
    narrow = [(a, b, [NARROW[(i + k) % len(NARROW)][1] for k in (1, 2, 3)]) for i, (a, b) in enumerate(NARROW)]
    return {"root": root, "subject_exam": _exam(root / "subject_exam", "kestrel", narrow)}


def _train(model: Path, data: list, out: Path, cache: Path) -> str:
    """Full fine-tuning at a learning rate far above a gentle one: a few steps are enough to do damage."""
    from subjectlm.train.config import PTConfig
    from subjectlm.train.pt import run

    config = PTConfig(model=str(model), data=data, output_dir=str(out), full_finetuning=True, block_size=64,
                      learning_rate=LEARNING_RATE, max_steps=STEPS, per_device_train_batch_size=4,
                      warmup_steps=0, lr_scheduler_type="constant", logging_steps=50, save_steps=10_000,
                      report_to=["none"], overwrite=True, seed=0, data_cache_dir=str(cache))
    return run(config)["model"]


def _evaluate(world: dict, start: Path, tuned: str, out: Path) -> list[str]:
    """The eval stage on the tuned model (its base: the start), then the report's verdict block."""
    from subjectlm.eval.recipe_stage import EvalStageConfig, run
    from subjectlm.report import verdict_block

    config = EvalStageConfig(data=str(world["subject_exam"]), model=tuned, base_model=str(start), scoring="cloze",
                             shots=0, output_dir=str(out / "eval"),
                             general_data=[{"path": str(DATA / "general"), "limit": GENERAL_PER_SUBJECT}],
                             general_ppl_data=[str(DATA / "general_text.txt")], dtype="fp32", device="cpu")
    result = run(config)
    state = {"eval": {"hash": "x", "config": to_dict(config), "result": result, "seconds": 1.0}}
    (out / "pipeline_state.json").write_text(json.dumps(state))
    return verdict_block(out)


@pytest.mark.slow
def test_replay_keeps_more_of_what_a_destructive_fine_tune_forgets(world, default_model_dir, tmp_path):
    root, cache, start = world["root"], tmp_path / "cache", default_model_dir
    narrow = [str(root / "narrow.txt")]
    destroyed = _train(start, narrow, tmp_path / "narrow", cache)
    replayed = _train(start, [*narrow, {"path": str(DATA / "general_replay.txt"), "weight": 0.2}],
                      tmp_path / "replay", cache)

    # Measured (seed 0): start 70.8% cloze_acc on 48 general questions; narrow 45.8% (-25.0 points,
    # CI [-41.7, -10.4], p=0.0075), perplexity x45.0 on general_text.txt. The subject exam (6 questions)
    # gains nothing in 10 steps, so "Knowledge gained" is not asserted here. With replay: 81.2% (+10.4 points,
    # p=0.125), perplexity x2.38.
    lines = _evaluate(world, start, destroyed, tmp_path / "run-narrow")
    retention = json.loads((tmp_path / "run-narrow" / "eval" / "retention.json").read_text())
    drop = retention["exams"][0]["modes"]["cloze_acc"]
    assert drop["n"] == 4 * GENERAL_PER_SUBJECT and drop["acc_a"] >= 0.6  # the start knows everyday things (chance: 25%)
    assert drop["delta"] <= -0.15 and drop["p_value"] < 0.05 and drop["delta_ci"][1] < 0  # and the tuning lost them
    assert lines[1].startswith("General ability kept: no — general cloze_acc ")
    assert retention["ppl"]["overall"]["ratio"] > 10

    _evaluate(world, start, replayed, tmp_path / "run-replay")
    kept = json.loads((tmp_path / "run-replay" / "eval" / "retention.json").read_text())
    kept_mode = kept["exams"][0]["modes"]["cloze_acc"]
    assert kept_mode["delta"] > drop["delta"] + REPLAY_MARGIN  # replay drops clearly less
    assert kept["ppl"]["overall"]["ratio"] < retention["ppl"]["overall"]["ratio"]
