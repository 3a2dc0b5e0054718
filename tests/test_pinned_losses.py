"""Pinned numbers, as torchtune's recipe tests pin theirs: the per-step loss of a tiny `pt` and `sft` run,
and the loss and reward margin of a tiny `dpo` run, at a fixed seed on CPU in fp32, compared with the
trajectories stored in tests/golden/loss_trajectories.json. A change to a chat template, the label mask,
the loss, packing, the data order or the LoRA setup moves these numbers and fails here.

Each run is the real stage (`subjectlm.train.pt:run`, `sft:run`, `dpo:run`) on the 2-layer `tiny_llama_dir`
model of conftest.py, 6-8 steps with logging_steps 1; the numbers are read back from the run's metrics.jsonl.

Tolerance: rtol 1e-3 (plus atol 1e-4 for the DPO margin, which is exactly 0 at step 1, where the LoRA
adapter is still zero and the policy is the reference). Measured when recording: two runs, and runs with
1 and 2 torch threads, gave bitwise-identical trajectories, so the slack is only for other CPUs' kernels
and library builds. What it still catches, measured: every token labelled instead of the answer's moves
the sft trajectory by 0.25% at step 1 and up to 4% later (test_a_label_mask_change_moves_the_sft_pin); the
chatml template instead of SmolLM2's own, or another system prompt, by 0.14-0.17% at step 1 and up to 6%
later. Step 1 moves least because the random tiny model predicts nearly uniformly (loss ~ ln 49152 = 10.80)
whatever the tokens; the trained steps show what the model was trained on.

Re-record (after a deliberate change, or a torch/transformers upgrade that moves the numbers: the file
keeps the versions it was recorded with, and a failure names both):

    SUBJECTLM_RECORD_GOLDEN=1 .venv/bin/python -m pytest -p no:cacheprovider -q tests/test_pinned_losses.py

which rewrites each run's entry (config, versions, trajectories) instead of comparing. Review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

GOLDEN = Path(__file__).resolve().parent / "golden" / "loss_trajectories.json"
RECORD = os.environ.get("SUBJECTLM_RECORD_GOLDEN") == "1"
RTOL = 1e-3
ATOL = {"loss": 0.0, "rewards/margins": 1e-4}

COMMON = {"max_steps": 8, "logging_steps": 1, "learning_rate": 1e-2, "warmup_ratio": 0.0, "lora_rank": 4,
          "seed": 42, "torch_dtype": "float32", "report_to": ["none"], "save_steps": 100}
RUNS: dict[str, dict[str, Any]] = {
    "pt": {"metrics": ["loss"], "data": "pt_corpus",
           "config": {**COMMON, "block_size": 32, "per_device_train_batch_size": 2}},
    "sft": {"metrics": ["loss"], "data": "sft_records",
            "config": {**COMMON, "max_seq_length": 128, "per_device_train_batch_size": 4}},
    "dpo": {"metrics": ["loss", "rewards/margins"], "data": "dpo_pairs",
            "config": {**COMMON, "max_steps": 6, "learning_rate": 5e-3, "max_length": 64, "beta": 0.1,
                       "per_device_train_batch_size": 2, "template": "chatml"}},
}  # each run's stage is its name; `metrics` are the logged keys pinned per step


# ---- the data: small, fixed, written by these functions (the golden file names which one each run used)


def pt_corpus(folder: Path) -> Path:
    path = folder / "corpus.txt"
    path.write_text("\n\n".join(f"Paragraph {i}: the basalt cliffs of Kestrel Island rise {10 * i} metres "
                                f"above the bay, layer upon layer of old lava." for i in range(12)))
    return path


def sft_records(folder: Path) -> Path:
    path = folder / "sft.jsonl"
    path.write_text("".join(json.dumps({"instruction": f"How high is cliff {i} of Kestrel Island?",
                                        "output": f"Cliff {i} rises {10 * i} metres above the bay."}) + "\n"
                            for i in range(8)))
    return path


def dpo_pairs(folder: Path) -> Path:
    path = folder / "dpo.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"Is cliff {i} made of basalt?", "chosen": "Yes, of old lava.",
                                        "rejected": "No idea, go away."}) + "\n" for i in range(8)))
    return path


# ---- running a stage and reading its trajectory back


def versions() -> dict[str, str]:
    import peft
    import torch
    import transformers
    import trl

    return {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
            "trl": trl.__version__}


def train(name: str, model: Path, folder: Path, **overrides: Any) -> dict[str, list[float]]:
    """Run stage `name` for real in `folder`; its pinned metrics per logged step, from its metrics.jsonl."""
    from subjectlm.config import build_config
    from subjectlm.train import dpo, pt, sft
    from subjectlm.train.config import DPOConfig, PTConfig, SFTConfig
    from subjectlm.train.outputs import METRICS, read_metrics

    spec = RUNS[name]
    stage, cls = {"pt": (pt, PTConfig), "sft": (sft, SFTConfig), "dpo": (dpo, DPOConfig)}[name]
    data = globals()[spec["data"]](folder)
    out = folder / f"out-{name}"
    # A fresh tokenized-data cache: rows cached by another run (or another label mask) are never reused.
    cache = {} if name == "dpo" else {"data_cache_dir": str(folder / "cache")}  # dpo caches nothing
    config = build_config(cls, {**spec["config"], **overrides, "model": str(model), "data": [str(data)],
                                "output_dir": str(out), **cache})
    stage.run(config)
    rows = [r for r in read_metrics(out / METRICS) if "loss" in r]
    assert [r["step"] for r in rows] == list(range(1, spec["config"]["max_steps"] + 1))
    return {key: [r[key] for r in rows] for key in spec["metrics"]}


def _read_golden() -> dict[str, Any]:
    return json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}


def _record(name: str, got: dict[str, list[float]]) -> None:
    golden = _read_golden()
    spec = RUNS[name]
    golden[name] = {"stage": name, "model": "tiny_llama_dir (tests/conftest.py)",
                    "data": f"{spec['data']}() in tests/test_pinned_losses.py", "config": spec["config"],
                    "recorded_with": versions(), "steps": list(range(1, spec["config"]["max_steps"] + 1)),
                    "metrics": got}
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(dict(sorted(golden.items())), indent=2) + "\n")


def check_or_record(name: str, got: dict[str, list[float]]) -> None:
    import numpy as np

    if RECORD:
        _record(name, got)
        return
    want = _read_golden().get(name)
    assert want is not None, f"no golden trajectory for {name!r}: record it with SUBJECTLM_RECORD_GOLDEN=1"
    assert want["config"] == RUNS[name]["config"], (
        f"{name}: the test's config is not the one recorded; re-record with SUBJECTLM_RECORD_GOLDEN=1")
    drift = "" if want["recorded_with"] == versions() else (
        f" (recorded with {want['recorded_with']}, running {versions()}: if only the versions moved the numbers, "
        "re-record with SUBJECTLM_RECORD_GOLDEN=1)")
    for key, values in want["metrics"].items():
        np.testing.assert_allclose(got[key], values, rtol=RTOL, atol=ATOL[key],
                                   err_msg=f"{name} {key} per step{drift}")


# ---- the pins


@pytest.mark.parametrize("name", list(RUNS))
def test_trajectory_matches_the_golden_one(name, tmp_path, tiny_llama_dir):
    check_or_record(name, train(name, tiny_llama_dir, tmp_path))


def test_a_label_mask_change_moves_the_sft_pin(tmp_path, tiny_llama_dir, monkeypatch):
    """The same sft run with every token labelled (system turn, prompt and template tokens too), instead of the
    answer tokens only: its trajectory is far outside the tolerance, so the pin would catch such a change."""
    import numpy as np

    from subjectlm.train import tokenize

    answer_only = tokenize.tokenize_sft

    def every_token(*args, **kwargs):
        rows, stats = answer_only(*args, **kwargs)
        return [{"input_ids": r["input_ids"], "labels": list(r["input_ids"])} for r in rows], stats

    monkeypatch.setattr(tokenize, "tokenize_sft", every_token)
    got = np.array(train("sft", tiny_llama_dir, tmp_path)["loss"])
    want = np.array(_read_golden()["sft"]["metrics"]["loss"])
    moved = np.abs(got - want) / want
    assert moved[0] > RTOL and moved.max() > 10 * RTOL, moved
