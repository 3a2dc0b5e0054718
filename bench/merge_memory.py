"""Peak memory and time of `subjectlm merge` against peft's merge_and_unload + save_pretrained.

Builds a synthetic Llama-architecture model of ~1.5 GB in fp32 saved as 8 shards, and a
LoRA (r=64 on every linear layer, plus modules_to_save copies of embed_tokens and
lm_head, ~580 MB), then merges it twice, each time in a fresh process:

  subjectlm:  python -m subjectlm merge --base B --lora A --output_dir D1
  peft:       from_pretrained(B) -> PeftModel.from_pretrained(A) -> merge_and_unload()
              -> save_pretrained(D2)

Each process is timed from spawn to exit (imports included: they are part of what a
user waits for) and its peak RSS is read from the kernel (os.wait4's ru_maxrss, which
also counts memory-mapped file pages; the model is built in another child so that this
parent, whose RSS at fork time ru_maxrss would include, stays small). Finally both outputs are compared tensor by
tensor. Last line:

    merge_rss_ratio_vs_peft=X.XX merge_time_ratio_vs_peft=Y.YY max_abs_diff=Z

Run: .venv/bin/python bench/merge_memory.py [--workdir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import baselines

# The synthetic model: Llama layout, untied head, 32 heads of 64 with 4 KV heads.
MODEL = dict(vocab_size=32000, hidden_size=2048, intermediate_size=4096, num_hidden_layers=7,
             num_attention_heads=32, num_key_value_heads=4)
SHARDS = 8
RANK, ALPHA = 64, 128
LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

PEFT_MERGE = """
import sys, torch
from transformers import AutoModelForCausalLM
from peft import PeftModel
base, adapter, out = sys.argv[1:4]
model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
model.save_pretrained(out, max_shard_size="200MB")
"""


def base_tensors(cfg: dict) -> list[tuple[str, tuple[int, ...]]]:
    h, i, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    kv = h // cfg["num_attention_heads"] * cfg["num_key_value_heads"]
    names = [("model.embed_tokens.weight", (v, h))]
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        names += [(p + "input_layernorm.weight", (h,)), (p + "post_attention_layernorm.weight", (h,)),
                  (p + "self_attn.q_proj.weight", (h, h)), (p + "self_attn.k_proj.weight", (kv, h)),
                  (p + "self_attn.v_proj.weight", (kv, h)), (p + "self_attn.o_proj.weight", (h, h)),
                  (p + "mlp.gate_proj.weight", (i, h)), (p + "mlp.up_proj.weight", (i, h)),
                  (p + "mlp.down_proj.weight", (h, i))]
    return names + [("model.norm.weight", (h,)), ("lm_head.weight", (v, h))]


def build_base(path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    path.mkdir(parents=True)
    torch.manual_seed(0)
    tensors = base_tensors(MODEL)
    sizes = [4 * torch.Size(shape).numel() for _, shape in tensors]
    target = sum(sizes) / SHARDS
    groups: list[list[int]] = [[]]
    filled = 0.0
    for index, _ in enumerate(tensors):
        if groups[-1] and filled + sizes[index] / 2 > target * len(groups) and len(groups) < SHARDS:
            groups.append([])
        groups[-1].append(index)
        filled += sizes[index]
    weight_map = {}
    for n, group in enumerate(groups):
        name = f"model-{n + 1:05d}-of-{len(groups):05d}.safetensors"
        shard = {}
        for index in group:
            key, shape = tensors[index]
            shard[key] = torch.ones(shape) if key.endswith("norm.weight") else torch.randn(shape) * 0.02
            weight_map[key] = name
        save_file(shard, path / name, metadata={"format": "pt"})
    (path / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": sum(sizes)}, "weight_map": weight_map}, indent=1))
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "tie_word_embeddings": False,
              "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "hidden_act": "silu", "dtype": "float32",
              **MODEL}
    (path / "config.json").write_text(json.dumps(config, indent=1))


def build_adapter(base: Path, path: Path) -> None:
    import torch
    from peft import LoraConfig
    from safetensors.torch import save_file

    LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=list(LINEAR), modules_to_save=["embed_tokens", "lm_head"],
               task_type="CAUSAL_LM", base_model_name_or_path=str(base)).save_pretrained(path)
    torch.manual_seed(1)
    prefix = "base_model.model."
    adapter = {}
    for key, shape in base_tensors(MODEL):
        module = key.removesuffix(".weight")
        if module.rsplit(".", 1)[-1] in LINEAR:
            adapter[f"{prefix}{module}.lora_A.weight"] = torch.randn(RANK, shape[1]) * 0.01
            adapter[f"{prefix}{module}.lora_B.weight"] = torch.randn(shape[0], RANK) * 0.01
        elif key in ("model.embed_tokens.weight", "lm_head.weight"):
            adapter[prefix + key] = torch.randn(shape) * 0.02
    save_file(adapter, path / "adapter_model.safetensors", metadata={"format": "pt"})


def measure(command: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{command[:4]} failed:\n{proc.stderr.read().decode()[-3000:]}")
    return seconds, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def tensor_files(model_dir: Path) -> dict[str, Path]:
    index = model_dir / "model.safetensors.index.json"
    if index.exists():
        return {k: model_dir / v for k, v in json.loads(index.read_text())["weight_map"].items()}
    return {}


def max_abs_diff(a: Path, b: Path) -> float:
    import numpy as np

    from subjectlm.merge.tensors import read_float32, read_header

    files_a, files_b = tensor_files(a), tensor_files(b)
    headers: dict[Path, dict] = {}

    def info(files, name):
        if files[name] not in headers:
            headers[files[name]] = read_header(files[name])[0]
        return headers[files[name]][name]

    if set(files_a) != set(files_b):
        raise SystemExit(f"different tensors: {sorted(set(files_a) ^ set(files_b))[:5]}")
    worst = 0.0
    for name in files_a:
        x, y = read_float32(info(files_a, name)), read_float32(info(files_b, name))
        worst = max(worst, float(np.abs(x - y).max()))
    return worst


def warm(path: Path) -> None:
    """Read a directory once so that both merges start with it in the page cache."""
    for file in path.iterdir():
        with open(file, "rb") as handle:
            while handle.read(64 << 20):
                pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", help="where to build the model (default: a temp dir, removed at the end)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--build", metavar="DIR", help=argparse.SUPPRESS)  # internal: build into DIR and exit
    args = parser.parse_args()
    if args.build:
        build_base(Path(args.build) / "base")
        build_adapter(Path(args.build) / "base", Path(args.build) / "adapter")
        return
    gone = baselines.missing("peft")
    if gone:  # peft also builds the test adapter, so without it neither side can run
        print(gone)
        print("merge not measured: the synthetic LoRA adapter is built with peft")
        return
    work = Path(args.workdir or tempfile.mkdtemp(prefix="merge-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    base, adapter = work / "base", work / "adapter"
    try:
        if not (base / "config.json").exists():
            print("building the synthetic base model and adapter ...", flush=True)
            shutil.rmtree(base, ignore_errors=True)
            shutil.rmtree(adapter, ignore_errors=True)
            # In a child process: a child's ru_maxrss includes its parent's RSS at fork time, so this
            # process must stay small while it measures.
            subprocess.run([sys.executable, __file__, "--build", str(work)], check=True)
        size = sum(f.stat().st_size for f in base.glob("*.safetensors")) / 1e9
        asize = (adapter / "adapter_model.safetensors").stat().st_size / 1e6
        print(f"base: {size:.2f} GB in {len(list(base.glob('*.safetensors')))} shards; adapter: {asize:.0f} MB", flush=True)
        for out in ("ours", "peft"):
            shutil.rmtree(work / out, ignore_errors=True)
        warm(base)
        warm(adapter)
        ours_t, ours_rss = measure([sys.executable, "-m", "subjectlm", "merge", "--base", str(base),
                                    "--lora", str(adapter), "--output_dir", str(work / "ours")])
        print(f"subjectlm merge: {ours_t:6.1f} s  peak RSS {ours_rss:7.0f} MiB", flush=True)
        peft_t, peft_rss = measure([sys.executable, "-c", PEFT_MERGE, str(base), str(adapter), str(work / "peft")])
        print(f"peft merge:      {peft_t:6.1f} s  peak RSS {peft_rss:7.0f} MiB", flush=True)
        diff = max_abs_diff(work / "ours", work / "peft")
        print(f"merge_rss_ratio_vs_peft={ours_rss / peft_rss:.2f} merge_time_ratio_vs_peft={ours_t / peft_t:.2f} "
              f"max_abs_diff={diff:.3g}")
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
