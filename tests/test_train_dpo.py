"""DPO on a tiny model: the chosen-minus-rejected log-probability margin grows on held-out pairs."""

from __future__ import annotations

import json
from pathlib import Path

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


def test_dpo_continues_an_sft_adapter(tmp_path, tiny_llama_dir):
    """--peft_path: the SFT adapter is the reference and is trained further (same rank and modules)."""
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    sft_data = tmp_path / "sft.jsonl"
    sft_data.write_text("".join(json.dumps({"instruction": f"Question {i}", "output": "Answer."}) + "\n"
                                for i in range(8)))
    common = ["--per_device_train_batch_size", "4", "--report_to", "none", "--warmup_ratio", "0",
              "--logging_steps", "1"]
    sft, dpo = tmp_path / "sft", tmp_path / "dpo"
    assert main(["sft", "--model", str(tiny_llama_dir), "--data", str(sft_data), "--output_dir", str(sft),
                 "--max_steps", "2", "--lora_rank", "4", "--lora_trainable", "q_proj,v_proj", *common]) == 0
    train, held_out = _pairs(tmp_path / "train.jsonl", 0, 16), _pairs(tmp_path / "held.jsonl", 100, 6)
    assert main(["dpo", "--model", str(tiny_llama_dir), "--peft_path", str(sft), "--data", str(train),
                 "--output_dir", str(dpo), "--max_steps", "8", "--learning_rate", "5e-3", "--max_length", "64",
                 *common]) == 0
    before, after = load_file(str(sft / "adapter_model.safetensors")), load_file(str(dpo / "adapter_model.safetensors"))
    assert before.keys() == after.keys()
    assert all(before[k].shape == after[k].shape for k in before)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert json.loads((dpo / "adapter_config.json").read_text())["r"] == 4
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)

    def margin(adapter: Path) -> float:
        base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
        return _margin(PeftModel.from_pretrained(base, str(adapter)).eval(), tokenizer, held_out)

    assert margin(dpo) > margin(sft) + 0.5
