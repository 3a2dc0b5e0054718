"""SFT throughput: `subjectlm sft` against TRL's SFTTrainer, side by side in one invocation.

Same model (the default SmolLM2-135M-Instruct), same LoRA (r=16, alpha=32, dropout 0.05, all linear
layers), same 512 records of ../shared/seed_data/ruozhiba_qa2449_gpt4o.json as prompt/completion pairs,
max length 512, batch 4 x accumulation 2, 20 steps, the same seed (so both see the same examples in the
same order), gradient checkpointing on for both (TRL's default: full, every layer rerun in backward).
Two precisions, each the same on both sides:
  fp32  weights and compute in float32 (TRL: bf16=False).
  bf16  TRL's own SFTConfig default (`bf16=None` becomes True unless fp16 is set, on CPU too): weights
        loaded in float32, the Trainer's bf16 mixed precision, i.e. accelerate's
        torch.autocast("cpu", dtype=bfloat16) around forward and loss; ours is `--bf16` with the default
        `--torch_dtype float32`, the same autocast. Each child checks that the first LoRA'd projection
        really computed in bfloat16 (a forward hook) and says so in its result.
TRL runs on its defaults otherwise (no packing); its loss is on completion tokens
only, as ours is on the answer only. Ours: padding-free packed micro-batches with per-example attention,
logits only at label positions and in chunks (train/loss.py), and selective checkpointing (matmul and attention outputs kept, the
cheap rest recomputed: train/checkpointing.py). The peak RSS column shows what that costs in memory.

Where the time goes (ours, fp32, before train/speed.py; torch.profiler over one packed micro-batch of
4 examples = 1,126 tokens, 849 labels, selective checkpointing, on a 2-core AVX2 machine at load ~7,
so small memory-bound ops look dearer than on a quiet one; self CPU time, 69 s in all):
  matmuls (aten::mm) 40%: the base projections ~16% (576x1536 / 1536x576 MLP 11%, 576x576 q/o 3.5%,
      576x192 k/v 1%), LoRA's rank-16 products ~17% (x.A and u.B forward, again in recompute, and
      their three backward products: thin matmuls run far below the big ones' FLOP rate), the
      output head in the chunked loss 3.8% (forward logits 2.2%, hidden gradient 1.5%);
  LoRA dropout ~15%: the mask (bernoulli_ 8.5%, one random draw per element, twice: forward and
      recompute), the mask multiply and the 1/(1-p) division (2.5%) over [T, in] per projection;
  other elementwise ops (mul/add/copy/fill/cat: RMSNorm, RoPE, SiLU, residuals, gradient sums,
      the per-example attention's concatenation) ~30%;
  attention (SDPA flash kernel, forward and backward) 4%; the selective-checkpoint dispatch
      (PythonDispatchMode) 2.4%; optimizer and collation below 1%.
train/speed.py (`fused_lora`, on by default) takes the LoRA part: one autograd node per projection,
the dropout mask drawn four elements per random number and kept as bytes, 1/(1-p) folded into the
rank-r side, the LoRA product added by one addmm. Measured A/B (fused vs peft's forward, back to back
in one process, load ~5-7): q 576x576 + gate 576x1536 + down 1536x576 with LoRA r16 p0.05 on 1,126
tokens, forward + backward, 1 thread, 15 alternations: median 255 vs 268 ms (-5%), best 216 vs 243 ms
(-11%); a whole micro-step of the real model (2 threads, 2 runs each) 94/93 s fused vs 186/74 s plain:
inside this machine's noise, to be remeasured quiet. The mask alone: 1.2 ms vs bernoulli_'s 4.5 ms
per [1126, 576]. Not tried yet: torch.compile of the decoder layer (the packed length varies per
micro-batch, so it needs dynamic shapes; it would take the ~30% of other elementwise ops, but its
compile time against a 20-step bench is unmeasured); bf16 on this machine: no AVX512-BF16/AMX here
(torch.backends.cpu.get_cpu_capability() == "AVX2", mkldnn bf16 unsupported), so a bf16 matmul is
~10x slower than fp32 on both sides; on a CPU with AVX512-BF16 or AMX, oneDNN runs them natively.

Profiled again 2026-12-01 (one packed micro-batch of 1,126 tokens, fused LoRA, selective checkpointing):
matmuls ~53%, the selective checkpoint's dispatch ~8%, the dropout mask's random draws ~6% (drawn twice:
forward and recompute), flash attention forward and backward ~9%, the output head in 85-row chunks ~12%.
Two changes came of it: the dropout mask is kept as uint8, not bool (a float tensor times a bool one first
copies the mask to float: 521 us against 128 us per [1126, 576] multiply, four multiplies per projection and
micro-step), and the head's chunks are 30 MiB (160 rows) instead of 16 MiB (head forward and gradient ~15%
faster in a side-by-side run). Without any checkpointing a micro-step was no faster within this machine's
noise and took ~0.9 GB more. Peak RSS differs by up to ~10% between identical runs (2,492 / 2,729 MB for the
same micro-step; TRL's peak read 6.84 and 5.74 GB on two runs of the same day), so rss_ratio moves with it.

Where our peak RSS goes (measured 2026-12-01 on the quiet machine, one packed micro-batch of 4 x 512 tokens,
the longest this bench can make, fp32, 3-4 micro-steps per process): 0.45 GB after load; the live tensors
peak at ~2.5 GB at the end of the forward (selective checkpointing keeps each layer's matmul and attention
outputs, ~0.7 MB per token over the 30 layers); glibc's heap holds freed but fragmented memory on top of that,
so the process peaks at 3.4-3.9 GB on its first micro-step and 3.9-4.4 GB from the second on. A fixed mmap
threshold removes most of the fragmentation (MALLOC_MMAP_THRESHOLD_=65536: 2.56 GB; 4 MiB: 2.9 GB) but then
every large tensor comes from fresh pages the kernel must zero: at 4 MiB a micro-step took 30-34 s against
19-22 s (huge pages via GLIBC_TUNABLES=glibc.malloc.hugetlb=1 included); 8 and 16 MiB saved little (4.09 and
4.39 GB); malloc_trim(0) after every micro-step left the peak where it was (4.13 against 4.32 GB), the bloat
being inside one forward; MALLOC_ARENA_MAX=1 changed nothing. So we keep glibc's defaults, as TRL's process does.

Each side runs in its own child process so peak RSS is its own. Reported per dtype: trained (label,
non-padding) tokens per second of training, peak RSS, and the loss of the last step. Last line:
    sft_speedup_vs_trl=X.XX sft_speedup_vs_trl_bf16=Y.YY rss_ratio_vs_trl=Z.ZZ loss_delta=W.WWW
(the first for fp32, the second for bf16; rss_ratio and loss_delta are fp32's, the table above has
both dtypes'; loss_delta is relative: (ours - trl) / trl; n/a for a dtype not run.) Without TRL
installed only our side runs and the line says what is missing.

    .venv/bin/python bench/sft_throughput.py [--dtype fp32|bf16|both] [--steps 20] [--records 512] [--threads N]
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

from baselines import missing

REPO = Path(__file__).resolve().parents[1]
SEED = REPO.parent / "shared" / "seed_data" / "ruozhiba_qa2449_gpt4o.json"
LORA = dict(r=16, lora_alpha=32, lora_dropout=0.05)
BATCH, ACCUM, MAX_LEN, LR = 4, 2, 512, 1e-4
GRADIENT_CHECKPOINTING = True  # TRL's default; ours in its "selective" mode (see train/checkpointing.py)
CHECKPOINT_MODE = "selective"


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024  # KiB on Linux


def watch_compute_dtype(model) -> dict:
    """The output dtype of the first LoRA'd projection's forward, filled in while training runs."""
    seen: dict = {}
    module = next(m for name, m in model.named_modules() if name.endswith("q_proj"))
    module.register_forward_hook(lambda mod, args, out: seen.update(dtype=str(out.dtype).split(".")[-1]))
    return seen


def run_ours(data: Path, out: Path, steps: int, dtype: str) -> dict:
    from transformers import TrainerCallback

    from subjectlm.train.config import SFTConfig
    from subjectlm.train.sft import run

    config = SFTConfig(model="default", data=[str(data)], output_dir=str(out), max_seq_length=MAX_LEN,
                       lora_rank=LORA["r"], lora_alpha=LORA["lora_alpha"], lora_dropout=LORA["lora_dropout"],
                       per_device_train_batch_size=BATCH, gradient_accumulation_steps=ACCUM, max_steps=steps,
                       learning_rate=LR, logging_steps=1, save_steps=10 * steps, report_to=["none"],
                       seed=42, gradient_checkpointing=GRADIENT_CHECKPOINTING,
                       gradient_checkpointing_mode=CHECKPOINT_MODE, bf16=dtype == "bf16", torch_dtype="float32")

    class WatchDtype(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            self.seen = watch_compute_dtype(model)

    watch = WatchDtype()
    run(config, callbacks=[watch])
    summary = json.loads((out / "train_summary.json").read_text())
    return {"tokens": summary["trained_tokens"], "seconds": summary["train_runtime"],
            "loss": summary["final_loss"], "rss_gb": peak_rss_gb(), "compute": watch.seen.get("dtype")}


def run_trl(data: Path, out: Path, steps: int, dtype: str) -> dict:
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

    # bf16: leave it unset, TRL's default (True unless fp16); fp32: switch it off
    precision = {} if dtype == "bf16" else {"bf16": False, "fp16": False}
    args = SFTConfig(output_dir=str(out), per_device_train_batch_size=BATCH, gradient_accumulation_steps=ACCUM,
                     max_steps=steps, learning_rate=LR, lr_scheduler_type="cosine", warmup_steps=0.03,
                     logging_steps=1, save_strategy="no", report_to="none", seed=42, max_length=MAX_LEN,
                     use_cpu=True, **precision)
    assert args.bf16 == (dtype == "bf16"), args.bf16
    model = AutoModelForCausalLM.from_pretrained(path, dtype="float32")
    trainer = CountingSFTTrainer(model=model, args=args, train_dataset=dataset,
                                 processing_class=AutoTokenizer.from_pretrained(path),
                                 peft_config=LoraConfig(**LORA, target_modules="all-linear", task_type="CAUSAL_LM"))
    seen = watch_compute_dtype(trainer.model)
    result = trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"tokens": counted["tokens"], "seconds": result.metrics["train_runtime"], "loss": losses[-1],
            "rss_gb": peak_rss_gb(), "compute": seen.get("dtype")}


def child(side: str, data: Path, out: Path, steps: int, dtype: str, threads: int | None) -> dict:
    env = {**os.environ}
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = [sys.executable, __file__, "--side", side, "--data", str(data), "--out", str(out), "--steps", str(steps),
           "--dtype", dtype]
    start = time.time()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{side} ({dtype}) failed:\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall"] = time.time() - start
    want = "float32" if dtype == "fp32" else "bfloat16"
    if result["compute"] != want:
        sys.exit(f"{side} ({dtype}): the projections computed in {result['compute']}, not {want}")
    return result


def bf16_has_hardware() -> bool:
    """CUDA, or a CPU whose flags show bf16 dot products (what oneDNN's fast bf16 matmul needs)."""
    import torch

    if torch.cuda.is_available():
        return True
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--records", type=int, default=512)
    parser.add_argument("--dtype", choices=["auto", "fp32", "bf16", "both"], default="auto",
                        help="auto: both where bf16 has matmul hardware (CUDA, AVX512-BF16, AMX), else fp32")
    parser.add_argument("--threads", type=int, default=None, help="OMP threads per side (default: torch's)")
    parser.add_argument("--side", choices=["ours", "trl"], help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:  # child process: one side, one dtype, JSON on the last line
        result = (run_ours if args.side == "ours" else run_trl)(args.data, args.out, args.steps, args.dtype)
        print(json.dumps(result))
        return
    if not SEED.is_file():
        sys.exit(f"{SEED} is missing")
    absent = missing("trl")
    if absent:
        print(absent, flush=True)
    sides = ("ours",) if absent else ("trl", "ours")
    if args.dtype == "auto":
        args.dtype = "both" if bf16_has_hardware() else "fp32"
        if args.dtype == "fp32":
            print("bf16 skipped: this CPU has no bf16 matmul units (no AVX512-BF16 or AMX), where a bf16 step "
                  "is ~10x slower than fp32 on both sides; --dtype both forces it", flush=True)
    dtypes = ("fp32", "bf16") if args.dtype == "both" else (args.dtype,)
    results: dict[tuple[str, str], dict] = {}
    with tempfile.TemporaryDirectory(prefix="sft-bench-") as tmp:
        data = Path(tmp) / "records.json"
        data.write_text(json.dumps(json.loads(SEED.read_text(encoding="utf-8"))[: args.records], ensure_ascii=False))
        for dtype in dtypes:
            for side in sides:
                print(f"running {side} {dtype} ({args.steps} steps of {BATCH} x {ACCUM}) ...", flush=True)
                results[side, dtype] = child(side, data, Path(tmp) / f"{side}-{dtype}", args.steps, dtype,
                                             args.threads)
    print(f"{'':11} {'label tok/s':>12} {'tokens':>8} {'train s':>8} {'peak RSS GB':>12} {'final loss':>11}")
    for (side, dtype), r in results.items():
        print(f"{side + ' ' + dtype:11} {r['tokens'] / r['seconds']:12.1f} {r['tokens']:8d} {r['seconds']:8.1f} "
              f"{r['rss_gb']:12.2f} {r['loss']:11.4f}")
    if absent:
        print(f"sft_speedup_vs_trl=n/a sft_speedup_vs_trl_bf16=n/a rss_ratio_vs_trl=n/a loss_delta=n/a ({absent})")
        return

    def ratios(dtype: str) -> tuple[str, str, str]:
        if ("ours", dtype) not in results:
            return "n/a", "n/a", "n/a"
        ours, trl = results["ours", dtype], results["trl", dtype]
        speedup = (ours["tokens"] / ours["seconds"]) / (trl["tokens"] / trl["seconds"])
        return (f"{speedup:.2f}", f"{ours['rss_gb'] / trl['rss_gb']:.2f}",
                f"{(ours['loss'] - trl['loss']) / trl['loss']:.3f}")

    fp32, bf16 = ratios("fp32"), ratios("bf16")
    if "fp32" not in dtypes:
        print(f"bf16: rss_ratio_vs_trl={bf16[1]} loss_delta={bf16[2]}")
    elif "bf16" in dtypes:
        print(f"bf16: rss_ratio_vs_trl={bf16[1]} loss_delta={bf16[2]} (the line below: fp32's)")
    print(f"sft_speedup_vs_trl={fp32[0]} sft_speedup_vs_trl_bf16={bf16[0]} rss_ratio_vs_trl={fp32[1]} "
          f"loss_delta={fp32[2]}")


if __name__ == "__main__":
    main()
