"""A real recipe on tiny models, no stand-ins: pt -> sft -> merge -> eval -> export.

Freshness: an unchanged re-run skips every stage; a changed pt corpus re-runs pt and everything
downstream of it; a changed exam re-runs eval alone. An error inside a stage is one `error:`
line and exit status 2, no traceback."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from subjectlm.recipe import run_recipe

REPO = Path(__file__).resolve().parents[1]
TRAIN = ("    max_steps: 2\n    per_device_train_batch_size: 2\n    logging_steps: 1\n    save_steps: 1000\n"
         "    lora_rank: 4\n    report_to: [none]\n    overwrite_output_dir: true\n")


def _exam(root: Path) -> Path:
    for split, rows in (("dev", 2), ("val", 3)):
        path = root / split / f"geology_{split}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", "question", "A", "B", "C", "D", "answer"])
            writer.writerows([[str(i), f"Which rock is number {i}?", "basalt", "chalk", "slate", "marble", "A"]
                              for i in range(rows)])
    (root / "subject_mapping.json").write_text(json.dumps({"geology": ["Geology", "地质学", "STEM"]}), encoding="utf-8")
    return root


@pytest.fixture()
def recipe_dir(tmp_path, tiny_llama_dir) -> Path:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "corpus.txt").write_text(
        "\n\n".join(f"Kestrel Island paragraph {i}: the cliffs are basalt and the beaches black sand." for i in range(8)))
    (tmp_path / "data" / "sft.jsonl").write_text("".join(
        json.dumps({"instruction": f"What is on beach {i}?", "output": "Black basalt sand."}) + "\n" for i in range(4)))
    _exam(tmp_path / "exam")
    (tmp_path / "recipe.yaml").write_text(
        f"model: {tiny_llama_dir}\noutput_dir: out\nstages:\n"
        "  - stage: pt\n    data: data/corpus.txt\n    block_size: 32\n" + TRAIN +
        "  - stage: sft\n    data: data/sft.jsonl\n    max_seq_length: 64\n" + TRAIN +
        "  - stage: merge\n    overwrite: true\n"
        "  - stage: eval\n    data: exam\n    shots: 1\n"
        "  - stage: export\n    quantize: []\n    verify: false\n")
    return tmp_path


def _statuses(path: Path) -> dict[str, str]:
    return {o.name: o.status for o in run_recipe(path, log=lambda *_: None)}


def test_freshness_follows_the_inputs(recipe_dir):
    path = recipe_dir / "recipe.yaml"
    everything = {"pt": "done", "sft": "done", "merge": "done", "eval": "done", "export": "done"}
    assert _statuses(path) == everything
    out = recipe_dir / "out"
    assert (out / "merge" / "config.json").is_file() and list((out / "export").glob("*.gguf"))
    assert json.loads((out / "eval" / "model" / "summary.json").read_text())["count"] == 3
    assert _statuses(path) == dict.fromkeys(everything, "skipped")

    with open(recipe_dir / "data" / "corpus.txt", "a") as handle:  # one more paragraph of pt data
        handle.write("\n\nA new paragraph: the island's youngest lava flow is 900 years old.\n")
    assert _statuses(path) == everything
    state = json.loads((out / "pipeline_state.json").read_text())
    assert state["sft"]["inputs"]["peft_path"] != "missing"  # sft re-ran because pt's adapter is new

    with open(recipe_dir / "exam" / "val" / "geology_val.csv", "a", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerow(["3", "Which rock floats?", "pumice", "granite", "gneiss", "slate", "A"])
    assert _statuses(path) == {**dict.fromkeys(everything, "skipped"), "eval": "done"}  # and nothing else
    assert json.loads((out / "eval" / "model" / "summary.json").read_text())["count"] == 4


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    return subprocess.run([sys.executable, "-m", "subjectlm", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=env)


def test_error_inside_a_stage_is_one_error_line(tmp_path, tiny_llama_dir):
    (tmp_path / "not-an-adapter").mkdir()  # exists, so the recipe check passes; the merge finds it out
    (tmp_path / "recipe.yaml").write_text(
        f"model: {tiny_llama_dir}\nstages:\n  - stage: merge\n    lora: [not-an-adapter]\n")
    proc = _cli("run", "recipe.yaml", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {tmp_path / 'not-an-adapter'}: not a LoRA adapter directory (no adapter_config.json)"]
    assert "[merge] failed" in proc.stdout


def test_eval_pointed_at_a_missing_exam_stops_before_the_first_stage(tmp_path, tiny_llama_dir):
    (tmp_path / "c.txt").write_text("Basalt cliffs.\n")
    (tmp_path / "recipe.yaml").write_text(
        f"model: {tiny_llama_dir}\nstages:\n  - stage: pt\n    data: c.txt\n  - stage: eval\n    data: no-exam\n")
    proc = _cli("run", "recipe.yaml", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: recipe.yaml:6: stage eval: data: no-exam does not exist ({tmp_path / 'no-exam'}) "
                      "(found by the recipe check: no stage was run)"]
    assert not (tmp_path / "runs" / "recipe" / "pt").exists()
