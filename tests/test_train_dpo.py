"""DPO on a tiny model: the chosen-minus-rejected log-probability margin grows on held-out pairs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from subjectlm.cli import main


def _pairs(path: Path, start: int, n: int) -> Path:
    rows = [{"prompt": f"Question {i}: is item {i} ready?", "chosen": "Yes, it is ready.",
             "rejected": "No idea, go away."} for i in range(start, start + n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _margin(model, tokenizer, pairs_file: Path) -> float:
    from subjectlm.data import load_dpo
    from subjectlm.train.dpo import to_strings

    margins = []
    for pair in load_dpo([pairs_file]).items:
        text = to_strings(pair, tokenizer, "tokenizer", "")
        prompt = tokenizer(text["prompt"], add_special_tokens=False)["input_ids"]
        scores = []
        for key in ("chosen", "rejected"):
            answer = tokenizer(text[key], add_special_tokens=False)["input_ids"]
            ids = torch.tensor([prompt + answer])
            with torch.no_grad():
                logp = model(input_ids=ids).logits[0, :-1].log_softmax(-1)
            targets = ids[0, 1:]
            scores.append(float(logp[torch.arange(len(targets)), targets][len(prompt) - 1:].sum()))
        margins.append(scores[0] - scores[1])
    return sum(margins) / len(margins)


def test_dpo_raises_the_margin_on_held_out_pairs(tmp_path, tiny_llama_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    train, held_out, out = _pairs(tmp_path / "train.jsonl", 0, 16), _pairs(tmp_path / "held.jsonl", 100, 6), tmp_path / "dpo"
    assert main(["dpo", "--model", str(tiny_llama_dir), "--data", str(train), "--output_dir", str(out),
                 "--max_steps", "8", "--per_device_train_batch_size", "4", "--learning_rate", "5e-3",
                 "--lora_rank", "8", "--logging_steps", "1", "--report_to", "none", "--warmup_ratio", "0",
                 "--max_length", "64", "--beta", "0.1"]) == 0
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    before = _margin(base, tokenizer, held_out)
    tuned = PeftModel.from_pretrained(base, str(out)).eval()
    after = _margin(tuned, tokenizer, held_out)
    assert after > before + 1.0
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    accuracies = [r["rewards/accuracies"] for r in rows if "rewards/accuracies" in r]
    assert accuracies and max(accuracies[-3:]) > 0.5
    assert (out / "adapter_model.safetensors").is_file()
