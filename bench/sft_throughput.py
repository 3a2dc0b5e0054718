"""SFT throughput: `subjectlm sft` against TRL's SFTTrainer, side by side in one invocation.

Same model (the default SmolLM2-135M-Instruct), same LoRA (r=16, alpha=32, dropout 0.05, all linear
layers), same 512 records of ../shared/seed_data/ruozhiba_qa2449_gpt4o.json as prompt/completion pairs,
max length 512, batch 4 x accumulation 2, 20 steps, fp32 on both sides, the same seed (so both see the
same examples in the same order), gradient checkpointing on for both (TRL's default: full, every layer
rerun in backward). TRL runs on its defaults otherwise (no packing); its loss is on completion tokens
only, as ours is on the answer only. Ours: padding-free packed micro-batches with per-example attention,
logits only at label positions and in chunks (train/loss.py), and selective checkpointing (matmul and attention outputs kept, the
cheap rest recomputed: train/checkpointing.py). The peak RSS column shows what that costs in memory.

Each side runs in its own child process so peak RSS is its own. Reported: trained (label, non-padding)
tokens per second of training, peak RSS, and the loss of the last step. Last line:
    sft_speedup_vs_trl=X.XX rss_ratio_vs_trl=Y.YY loss_delta=Z.ZZZ
(loss_delta is relative: (ours - trl) / trl.)

    .venv/bin/python bench/sft_throughput.py [--steps 20] [--records 512] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SEED = REPO.parent / "shared" / "seed_data" / "ruozhiba_qa2449_gpt4o.json"
LORA = dict(r=16, lora_alpha=32, lora_dropout=0.05)
BATCH, ACCUM, MAX_LEN, LR = 4, 2, 512, 1e-4
GRADIENT_CHECKPOINTING = True  # TRL's default; ours in its "selective" mode (see train/checkpointing.py)
CHECKPOINT_MODE = "selective"


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024  # KiB on Linux


def run_ours(data: Path, out: Path, steps: int) -> dict:
    from subjectlm.train.config import SFTConfig
    from subjectlm.train.sft import run

    config = SFTConfig(model="default", data=[str(data)], output_dir=str(out), max_seq_length=MAX_LEN,
                       lora_rank=LORA["r"], lora_alpha=LORA["lora_alpha"], lora_dropout=LORA["lora_dropout"],
                       per_device_train_batch_size=BATCH, gradient_accumulation_steps=ACCUM, max_steps=steps,
                       learning_rate=LR, logging_steps=1, save_steps=10 * steps, report_to=["none"],
                       overwrite_output_dir=True, seed=42, gradient_checkpointing=GRADIENT_CHECKPOINTING,
                       gradient_checkpointing_mode=CHECKPOINT_MODE)
    run(config)
    summary = json.loads((out / "train_summary.json").read_text())
    return {"tokens": summary["trained_tokens"], "seconds": summary["train_runtime"],
            "loss": summary["final_loss"], "rss_gb": peak_rss_gb()}


def run_trl(data: Path, out: Path, steps: int) -> dict:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from subjectlm.models import resolve_model

    path = str(resolve_model("default"))
    records = json.loads(data.read_text())
    dataset = Dataset.from_list([
        {"prompt": [{"role": "user", "content": r["instruction"] + ("\n" + r["input"] if r["input"] else "")}],
         "completion": [{"role": "assistant", "content": r["output"]}]} for r in records])
    counted = {"tokens": 0}

    class CountingSFTTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if model.training:
                counted["tokens"] += int((inputs["labels"][..., 1:] != -100).sum())
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    args = SFTConfig(output_dir=str(out), per_device_train_batch_size=BATCH, gradient_accumulation_steps=ACCUM,
                     max_steps=steps, learning_rate=LR, lr_scheduler_type="cosine", warmup_steps=0.03,
                     logging_steps=1, save_strategy="no", report_to="none", seed=42, max_length=MAX_LEN,
                     bf16=False, fp16=False, use_cpu=True)
    model = AutoModelForCausalLM.from_pretrained(path, dtype="float32")
    trainer = CountingSFTTrainer(model=model, args=args, train_dataset=dataset,
                                 processing_class=AutoTokenizer.from_pretrained(path),
                                 peft_config=LoraConfig(**LORA, target_modules="all-linear", task_type="CAUSAL_LM"))
    result = trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"tokens": counted["tokens"], "seconds": result.metrics["train_runtime"], "loss": losses[-1],
            "rss_gb": peak_rss_gb()}


def child(side: str, data: Path, out: Path, steps: int, threads: int | None) -> dict:
    env = {**os.environ}
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = [sys.executable, __file__, "--side", side, "--data", str(data), "--out", str(out), "--steps", str(steps)]
    start = time.time()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{side} failed:\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall"] = time.time() - start
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--records", type=int, default=512)
    parser.add_argument("--threads", type=int, default=None, help="OMP threads per side (default: torch's)")
    parser.add_argument("--side", choices=["ours", "trl"], help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:  # child process: one side, JSON on the last line
        result = (run_ours if args.side == "ours" else run_trl)(args.data, args.out, args.steps)
        print(json.dumps(result))
        return
    if not SEED.is_file():
        sys.exit(f"{SEED} is missing")
    with tempfile.TemporaryDirectory(prefix="sft-bench-") as tmp:
        data = Path(tmp) / "records.json"
        data.write_text(json.dumps(json.loads(SEED.read_text(encoding="utf-8"))[: args.records], ensure_ascii=False))
        results = {}
        for side in ("trl", "ours"):
            print(f"running {side} ({args.steps} steps of {BATCH} x {ACCUM}) ...", flush=True)
            results[side] = child(side, data, Path(tmp) / side, args.steps, args.threads)
    print(f"{'':6} {'label tok/s':>12} {'tokens':>8} {'train s':>8} {'peak RSS GB':>12} {'final loss':>11}")
    for side, r in results.items():
        print(f"{side:6} {r['tokens'] / r['seconds']:12.1f} {r['tokens']:8d} {r['seconds']:8.1f} "
              f"{r['rss_gb']:12.2f} {r['loss']:11.4f}")
    ours, trl = results["ours"], results["trl"]
    speedup = (ours["tokens"] / ours["seconds"]) / (trl["tokens"] / trl["seconds"])
    print(f"sft_speedup_vs_trl={speedup:.2f} rss_ratio_vs_trl={ours['rss_gb'] / trl['rss_gb']:.2f} "
          f"loss_delta={(ours['loss'] - trl['loss']) / trl['loss']:.3f}")


if __name__ == "__main__":
    main()
