"""Retention: a destructive fine-tune makes the verdict say the general ability was not kept, with a
significant drop; the same run replaying 20% general data drops less.

A tiny random model first learns 32 "general" facts (full fine-tuning: the starting model), then is
tuned hard on a narrow corpus (learning rate 1e-2) with and without replay. Each tuned model goes
through the real eval stage (cloze scoring of a subject exam and of the general exam, both models)
and the report's verdict block.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from subjectlm.config import to_dict

THINGS = ("sky grass snow coal lemon fire ice salt sugar stone river desert forest cloud storm candle bread milk "
          "honey pepper iron glass paper rope wool silk clay sand moss tide ember frost").split()
VALUES = ("blue green white black sour hot cold salty sweet hard wet dry dark grey loud bright soft pale sticky "
          "spicy heavy clear thin long warm smooth slick fine damp high glowing icy").split()
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
    facts = [f"The {t} is {v}." for t, v in zip(THINGS, VALUES)]
    (root / "general.txt").write_text("\n".join(facts[(i * 7) % len(facts)] for i in range(12 * len(facts))) + "\n")
    (root / "narrow.txt").write_text("\n".join(f"{a} {b}." for _ in range(40) for a, b in NARROW) + "\n")
    general = [(f"The {t} is", v, [VALUES[(i + k) % len(VALUES)] for k in (5, 11, 17)])
               for i, (t, v) in enumerate(zip(THINGS, VALUES))]
    narrow = [(a, b, [NARROW[(i + k) % len(NARROW)][1] for k in (1, 2, 3)]) for i, (a, b) in enumerate(NARROW)]
    return {"root": root, "general_exam": _exam(root / "general_exam", "general", general),
            "subject_exam": _exam(root / "subject_exam", "kestrel", narrow)}


def _train(model: Path, data: list, out: Path, learning_rate: float, steps: int, cache: Path) -> str:
    from subjectlm.train.config import PTConfig
    from subjectlm.train.pt import run

    config = PTConfig(model=str(model), data=data, output_dir=str(out), full_finetuning=True, block_size=32,
                      learning_rate=learning_rate, max_steps=steps, per_device_train_batch_size=8,
                      warmup_steps=0, lr_scheduler_type="constant", logging_steps=50, save_steps=10_000,
                      report_to=["none"], overwrite=True, seed=0, data_cache_dir=str(cache))
    return run(config)["model"]


def _evaluate(world: dict, start: str, tuned: str, out: Path) -> list[str]:
    """The eval stage on the tuned model (its base: the start), then the report's verdict block."""
    from subjectlm.eval.recipe_stage import EvalStageConfig, run
    from subjectlm.report import verdict_block

    config = EvalStageConfig(data=str(world["subject_exam"]), model=tuned, base_model=start, scoring="cloze",
                             shots=0, output_dir=str(out / "eval"), general_data=[str(world["general_exam"])],
                             general_ppl_data=[str(world["root"] / "general.txt")], dtype="fp32", device="cpu")
    result = run(config)
    state = {"eval": {"hash": "x", "config": to_dict(config), "result": result, "seconds": 1.0}}
    (out / "pipeline_state.json").write_text(json.dumps(state))
    return verdict_block(out)


def test_replay_keeps_more_of_what_a_destructive_fine_tune_forgets(world, tiny_llama_dir, tmp_path):
    root, cache = world["root"], tmp_path / "cache"
    start = _train(tiny_llama_dir, [str(root / "general.txt")], tmp_path / "start", 3e-3, 80, cache)
    narrow = [str(root / "narrow.txt")]
    destroyed = _train(Path(start), narrow, tmp_path / "narrow", 1e-2, 40, cache)
    replayed = _train(Path(start), [*narrow, {"path": str(root / "general.txt"), "weight": 0.2}],
                      tmp_path / "replay", 1e-2, 40, cache)

    lines = _evaluate(world, start, destroyed, tmp_path / "run-narrow")
    retention = json.loads((tmp_path / "run-narrow" / "eval" / "retention.json").read_text())
    drop = retention["exams"][0]["modes"]["cloze_acc_norm"]
    assert drop["n"] == 32 and drop["acc_a"] >= 0.75  # the start knows the general facts
    assert drop["delta"] <= -0.3 and drop["p_value"] < 0.01 and drop["delta_ci"][1] < 0  # and the tuning lost them
    assert lines[1].startswith("General ability kept: no — general cloze_acc ")
    assert lines[0].startswith("Knowledge gained: yes")  # it did learn the narrow subject
    assert retention["ppl"]["overall"]["ratio"] > 1.1

    _evaluate(world, start, replayed, tmp_path / "run-replay")
    kept = json.loads((tmp_path / "run-replay" / "eval" / "retention.json").read_text())
    kept_mode = kept["exams"][0]["modes"]["cloze_acc_norm"]
    assert kept_mode["delta"] > drop["delta"] + 0.2  # replay drops far less
    assert kept["ppl"]["overall"]["ratio"] < retention["ppl"]["overall"]["ratio"]
